"""i2es-hub: the integration hub for I2ES import and export authorizations."""

__version__ = "0.1.0"

<?xml version="1.0" encoding="UTF-8"?>
<!--
  Kenya PPB e-Permit v2 -> i2es-hub canonical v1.
  Code lists (substances, salts, units, countries, dosage forms) come from
  codes/*.csv through map:code(); nothing is translated by hand here.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:ke="urn:ke:ppb:epermit:2"
    xmlns:map="urn:i2es-hub:mapping"
    xmlns="urn:i2es-hub:canonical:1"
    exclude-result-prefixes="ke map">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:strip-space elements="*"/>

  <xsl:template match="/ke:PermitDocument">
    <xsl:element name="{map:code('document_kinds', @kind)}">
      <xsl:attribute name="schemaVersion">1.0</xsl:attribute>
      <DocumentNumber><xsl:value-of select="ke:PermitNo"/></DocumentNumber>
      <IssuingCountry><xsl:value-of select="map:code('countries', ke:Issuer/@country)"/></IssuingCountry>
      <IssuingAuthority><xsl:value-of select="ke:Issuer"/></IssuingAuthority>
      <IssueDate><xsl:value-of select="ke:DateIssued"/></IssueDate>
      <xsl:choose>
        <xsl:when test="@kind = 'IMPORT_ENDORSEMENT'"><xsl:call-template name="endorsement"/></xsl:when>
        <xsl:otherwise><xsl:call-template name="authorization"/></xsl:otherwise>
      </xsl:choose>
    </xsl:element>
  </xsl:template>

  <xsl:template match="/*" priority="-1">
    <xsl:message terminate="yes">root element <xsl:value-of select="name()"/> is not a PPB PermitDocument</xsl:message>
  </xsl:template>

  <xsl:template name="authorization">
    <Validity>
      <From><xsl:value-of select="ke:ValidFrom"/></From>
      <Until><xsl:value-of select="ke:ValidTo"/></Until>
    </Validity>
    <Importer><xsl:apply-templates select="ke:Consignee"/></Importer>
    <Exporter><xsl:apply-templates select="ke:Consignor"/></Exporter>
    <Lines><xsl:apply-templates select="ke:Items/ke:Item" mode="line"/></Lines>
    <xsl:choose>
      <xsl:when test="@kind = 'IMPORT_PERMIT'">
        <xsl:apply-templates select="ke:MultipleShipments" mode="flag"><xsl:with-param name="name" select="'MultipleConsignments'"/></xsl:apply-templates>
        <xsl:apply-templates select="ke:BondedWarehouse" mode="flag"><xsl:with-param name="name" select="'BondedWarehouse'"/></xsl:apply-templates>
      </xsl:when>
      <xsl:otherwise>
        <xsl:for-each select="ke:ImportPermitRef">
          <ImportAuthorizationRef>
            <Number><xsl:value-of select="ke:PermitNo"/></Number>
            <IssueDate><xsl:value-of select="ke:DateIssued"/></IssueDate>
            <IssuingAuthority><xsl:value-of select="ke:Issuer"/></IssuingAuthority>
            <IssuingCountry><xsl:value-of select="map:code('countries', ke:Issuer/@country)"/></IssuingCountry>
          </ImportAuthorizationRef>
        </xsl:for-each>
        <xsl:for-each select="ke:ExpectedShipment"><ExpectedDispatchDate><xsl:value-of select="."/></ExpectedDispatchDate></xsl:for-each>
        <xsl:apply-templates select="ke:BondedWarehouse" mode="flag"><xsl:with-param name="name" select="'BondedWarehouse'"/></xsl:apply-templates>
      </xsl:otherwise>
    </xsl:choose>
    <xsl:for-each select="ke:Remarks"><Remarks><xsl:value-of select="."/></Remarks></xsl:for-each>
  </xsl:template>

  <xsl:template name="endorsement">
    <ExportAuthorizationRef>
      <Number><xsl:value-of select="ke:ExportPermitRef/ke:PermitNo"/></Number>
      <IssuingCountry><xsl:value-of select="map:code('countries', ke:ExportPermitRef/ke:Issuer/@country)"/></IssuingCountry>
    </ExportAuthorizationRef>
    <EndorsingAuthority><xsl:value-of select="ke:EndorsedBy"/></EndorsingAuthority>
    <xsl:for-each select="ke:DateReceived"><ReceiptDate><xsl:value-of select="."/></ReceiptDate></xsl:for-each>
    <xsl:for-each select="ke:ExpiredOn"><ExpiredWithoutImport><xsl:value-of select="."/></ExpiredWithoutImport></xsl:for-each>
    <Lines>
      <xsl:for-each select="ke:Items/ke:Item">
        <Line number="{@seq}">
          <Substance><xsl:value-of select="map:code('substances', ke:DrugCode)"/></Substance>
          <Form><xsl:value-of select="map:code('forms', ke:SaltCode)"/></Form>
          <QuantityReceived unit="{map:code('units', ke:QtyReceived/@uom)}"><xsl:value-of select="ke:QtyReceived"/></QuantityReceived>
          <xsl:apply-templates select="ke:StrengthPerUnit"/>
        </Line>
      </xsl:for-each>
    </Lines>
    <xsl:for-each select="ke:Remarks"><Remarks><xsl:value-of select="."/></Remarks></xsl:for-each>
  </xsl:template>

  <xsl:template match="ke:Consignee | ke:Consignor">
    <Name><xsl:value-of select="ke:Name"/></Name>
    <Address>
      <Street><xsl:value-of select="ke:PhysicalAddress"/></Street>
      <City><xsl:value-of select="ke:Town"/></City>
      <xsl:for-each select="ke:PostCode"><PostalCode><xsl:value-of select="."/></PostalCode></xsl:for-each>
      <Country><xsl:value-of select="map:code('countries', ke:Country)"/></Country>
    </Address>
    <xsl:for-each select="ke:LicenceNo"><LicenceNumber><xsl:value-of select="."/></LicenceNumber></xsl:for-each>
  </xsl:template>

  <xsl:template match="ke:Item" mode="line">
    <Line number="{@seq}">
      <Substance><xsl:value-of select="map:code('substances', ke:DrugCode)"/></Substance>
      <Convention><xsl:value-of select="map:code('substances', ke:DrugCode, 'convention')"/></Convention>
      <Schedule><xsl:value-of select="map:code('substances', ke:DrugCode, 'schedule')"/></Schedule>
      <Form><xsl:value-of select="map:code('forms', ke:SaltCode)"/></Form>
      <xsl:for-each select="ke:DosageForm"><PharmaceuticalForm><xsl:value-of select="map:code('dosage_forms', .)"/></PharmaceuticalForm></xsl:for-each>
      <xsl:for-each select="ke:ProductName"><PreparationName><xsl:value-of select="."/></PreparationName></xsl:for-each>
      <Quantity unit="{map:code('units', ke:Qty/@uom)}"><xsl:value-of select="ke:Qty"/></Quantity>
      <xsl:apply-templates select="ke:StrengthPerUnit"/>
    </Line>
  </xsl:template>

  <xsl:template match="ke:StrengthPerUnit">
    <StrengthPerUnit unit="{map:code('units', @uom)}"><xsl:value-of select="."/></StrengthPerUnit>
  </xsl:template>

  <xsl:template match="*" mode="flag">
    <xsl:param name="name"/>
    <xsl:element name="{$name}">
      <xsl:choose><xsl:when test=". = 'Y'">true</xsl:when><xsl:otherwise>false</xsl:otherwise></xsl:choose>
    </xsl:element>
  </xsl:template>
</xsl:stylesheet>

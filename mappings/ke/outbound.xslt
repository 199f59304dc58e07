<?xml version="1.0" encoding="UTF-8"?>
<!--
  i2es-hub canonical v1 -> Kenya PPB e-Permit v2.
  Input: the hub's Message envelope (MessageId, Findings, Payload) or a bare
  canonical document. Documents become a PermitDocument, alerts a HubAlert; the
  findings that travel with a document become HubNotes.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:c="urn:i2es-hub:canonical:1"
    xmlns:map="urn:i2es-hub:mapping"
    xmlns="urn:ke:ppb:epermit:2"
    exclude-result-prefixes="c map">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:template match="/c:Message">
    <xsl:apply-templates select="c:Payload/*">
      <xsl:with-param name="message" select="."/>
    </xsl:apply-templates>
  </xsl:template>

  <xsl:template match="c:ImportAuthorization | c:ExportAuthorization | c:Endorsement">
    <xsl:param name="message"/>
    <PermitDocument kind="{map:national('document_kinds', local-name())}" version="2.1">
      <PermitNo><xsl:value-of select="c:DocumentNumber"/></PermitNo>
      <Issuer country="{map:national('countries', c:IssuingCountry)}"><xsl:value-of select="c:IssuingAuthority"/></Issuer>
      <DateIssued><xsl:value-of select="c:IssueDate"/></DateIssued>
      <xsl:for-each select="c:Validity">
        <ValidFrom><xsl:value-of select="c:From"/></ValidFrom>
        <ValidTo><xsl:value-of select="c:Until"/></ValidTo>
      </xsl:for-each>
      <xsl:apply-templates select="c:Importer"/>
      <xsl:apply-templates select="c:Exporter"/>
      <xsl:for-each select="c:ExportAuthorizationRef">
        <ExportPermitRef>
          <PermitNo><xsl:value-of select="c:Number"/></PermitNo>
          <Issuer country="{map:national('countries', c:IssuingCountry)}"/>
        </ExportPermitRef>
      </xsl:for-each>
      <xsl:for-each select="c:EndorsingAuthority"><EndorsedBy><xsl:value-of select="."/></EndorsedBy></xsl:for-each>
      <xsl:for-each select="c:ReceiptDate"><DateReceived><xsl:value-of select="."/></DateReceived></xsl:for-each>
      <xsl:for-each select="c:ExpiredWithoutImport"><ExpiredOn><xsl:value-of select="."/></ExpiredOn></xsl:for-each>
      <Items><xsl:apply-templates select="c:Lines/c:Line"/></Items>
      <xsl:for-each select="c:ImportAuthorizationRef">
        <ImportPermitRef>
          <PermitNo><xsl:value-of select="c:Number"/></PermitNo>
          <DateIssued><xsl:value-of select="c:IssueDate"/></DateIssued>
          <Issuer country="{map:national('countries', c:IssuingCountry)}"><xsl:value-of select="c:IssuingAuthority"/></Issuer>
        </ImportPermitRef>
      </xsl:for-each>
      <xsl:for-each select="c:ExpectedDispatchDate"><ExpectedShipment><xsl:value-of select="."/></ExpectedShipment></xsl:for-each>
      <xsl:apply-templates select="c:MultipleConsignments" mode="flag"><xsl:with-param name="name" select="'MultipleShipments'"/></xsl:apply-templates>
      <xsl:apply-templates select="c:BondedWarehouse" mode="flag"><xsl:with-param name="name" select="'BondedWarehouse'"/></xsl:apply-templates>
      <xsl:for-each select="c:Remarks"><Remarks><xsl:value-of select="."/></Remarks></xsl:for-each>
      <xsl:if test="$message">
        <HubNotes messageId="{$message/c:MessageId}">
          <xsl:for-each select="$message/c:Findings/c:Finding">
            <Note code="{@code}" severity="{@severity}">
              <xsl:if test="@line"><xsl:attribute name="item"><xsl:value-of select="@line"/></xsl:attribute></xsl:if>
              <xsl:value-of select="."/>
            </Note>
          </xsl:for-each>
        </HubNotes>
      </xsl:if>
    </PermitDocument>
  </xsl:template>

  <xsl:template match="c:Alert">
    <xsl:param name="message"/>
    <HubAlert messageId="{$message/c:MessageId}">
      <AlertId><xsl:value-of select="c:AlertId"/></AlertId>
      <Code><xsl:value-of select="c:Code"/></Code>
      <Severity><xsl:value-of select="c:Severity"/></Severity>
      <Issued><xsl:value-of select="c:Issued"/></Issued>
      <Concerns kind="{c:Document/c:Type}" country="{map:national('countries', c:Document/c:IssuingCountry)}"><xsl:value-of select="c:Document/c:Number"/></Concerns>
      <xsl:for-each select="c:Line"><Item><xsl:value-of select="."/></Item></xsl:for-each>
      <Message><xsl:value-of select="c:Message"/></Message>
      <xsl:for-each select="c:Figure">
        <Figure name="{@name}">
          <xsl:if test="@unit"><xsl:attribute name="unit"><xsl:value-of select="@unit"/></xsl:attribute></xsl:if>
          <xsl:value-of select="."/>
        </Figure>
      </xsl:for-each>
    </HubAlert>
  </xsl:template>

  <xsl:template match="c:Payload/* | /*" priority="-1">
    <xsl:message terminate="yes"><xsl:value-of select="local-name()"/> has no PPB e-Permit form; Kenya receives import and export authorizations, endorsements and alerts</xsl:message>
  </xsl:template>

  <xsl:template match="c:Importer | c:Exporter">
    <xsl:element name="{substring('ConsigneeConsignor', 1 + 9 * (local-name() = 'Exporter'), 9)}">
      <Name><xsl:value-of select="c:Name"/></Name>
      <PhysicalAddress>
        <xsl:for-each select="c:Address/c:Street"><xsl:if test="position() &gt; 1">, </xsl:if><xsl:value-of select="."/></xsl:for-each>
      </PhysicalAddress>
      <Town><xsl:value-of select="c:Address/c:City"/></Town>
      <xsl:for-each select="c:Address/c:PostalCode"><PostCode><xsl:value-of select="."/></PostCode></xsl:for-each>
      <Country><xsl:value-of select="map:national('countries', c:Address/c:Country)"/></Country>
      <xsl:for-each select="c:LicenceNumber"><LicenceNo><xsl:value-of select="."/></LicenceNo></xsl:for-each>
    </xsl:element>
  </xsl:template>

  <xsl:template match="c:Line">
    <Item seq="{@number}">
      <DrugCode><xsl:value-of select="map:national('substances', c:Substance)"/></DrugCode>
      <SaltCode><xsl:value-of select="map:national('forms', c:Form)"/></SaltCode>
      <xsl:for-each select="c:PharmaceuticalForm"><DosageForm><xsl:value-of select="map:national('dosage_forms', .)"/></DosageForm></xsl:for-each>
      <xsl:for-each select="c:PreparationName"><ProductName><xsl:value-of select="."/></ProductName></xsl:for-each>
      <xsl:for-each select="c:Quantity"><Qty uom="{map:national('units', @unit)}"><xsl:value-of select="."/></Qty></xsl:for-each>
      <xsl:for-each select="c:QuantityReceived"><QtyReceived uom="{map:national('units', @unit)}"><xsl:value-of select="."/></QtyReceived></xsl:for-each>
      <xsl:for-each select="c:StrengthPerUnit"><StrengthPerUnit uom="{map:national('units', @unit)}"><xsl:value-of select="."/></StrengthPerUnit></xsl:for-each>
    </Item>
  </xsl:template>

  <xsl:template match="*" mode="flag">
    <xsl:param name="name"/>
    <xsl:element name="{$name}">
      <xsl:choose><xsl:when test=". = 'true' or . = '1'">Y</xsl:when><xsl:otherwise>N</xsl:otherwise></xsl:choose>
    </xsl:element>
  </xsl:template>
</xsl:stylesheet>

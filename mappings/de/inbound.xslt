<?xml version="1.0" encoding="UTF-8"?>
<!--
  BfArM BtM-Aussenhandel v1 (a batch file) -> i2es-hub canonical v1 Batch.
  Each Genehmigung or Bestaetigung becomes one canonical document. Dates
  TT.MM.JJJJ become ISO dates, decimal commas become points; substance, salt,
  unit, country and dosage-form names go through codes/*.csv (map:code).
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:de="urn:de:bfarm:btm-ah:1"
    xmlns:map="urn:i2es-hub:mapping"
    xmlns="urn:i2es-hub:canonical:1"
    exclude-result-prefixes="de map">
  <xsl:output method="xml" encoding="UTF-8"/>
  <xsl:strip-space elements="*"/>

  <xsl:template match="/de:BtMAussenhandel">
    <Batch><xsl:apply-templates select="de:Genehmigung | de:Bestaetigung"/></Batch>
  </xsl:template>

  <xsl:template match="/*" priority="-1">
    <xsl:message terminate="yes">root element <xsl:value-of select="name()"/> is not a BtM-Aussenhandel file</xsl:message>
  </xsl:template>

  <xsl:template match="de:Genehmigung">
    <xsl:element name="{map:code('document_kinds', @art)}">
      <xsl:attribute name="schemaVersion">1.0</xsl:attribute>
      <xsl:call-template name="header"/>
      <Validity>
        <From><xsl:call-template name="date"><xsl:with-param name="d" select="de:GueltigAb"/></xsl:call-template></From>
        <Until><xsl:call-template name="date"><xsl:with-param name="d" select="de:GueltigBis"/></xsl:call-template></Until>
      </Validity>
      <Importer><xsl:apply-templates select="de:Einfuehrer"/></Importer>
      <Exporter><xsl:apply-templates select="de:Ausfuehrer"/></Exporter>
      <Lines><xsl:apply-templates select="de:Position" mode="line"/></Lines>
      <xsl:choose>
        <xsl:when test="@art = 'Einfuhr'">
          <xsl:apply-templates select="de:MehrereSendungen" mode="flag"><xsl:with-param name="name" select="'MultipleConsignments'"/></xsl:apply-templates>
          <xsl:apply-templates select="de:Zolllager" mode="flag"><xsl:with-param name="name" select="'BondedWarehouse'"/></xsl:apply-templates>
        </xsl:when>
        <xsl:otherwise>
          <xsl:for-each select="de:Einfuhrgenehmigung">
            <ImportAuthorizationRef>
              <Number><xsl:value-of select="@nummer"/></Number>
              <IssueDate><xsl:call-template name="date"><xsl:with-param name="d" select="@datum"/></xsl:call-template></IssueDate>
              <IssuingAuthority><xsl:value-of select="."/></IssuingAuthority>
              <IssuingCountry><xsl:value-of select="map:code('countries', @land)"/></IssuingCountry>
            </ImportAuthorizationRef>
          </xsl:for-each>
          <xsl:for-each select="de:Versanddatum">
            <ExpectedDispatchDate><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></ExpectedDispatchDate>
          </xsl:for-each>
          <xsl:apply-templates select="de:Zolllager" mode="flag"><xsl:with-param name="name" select="'BondedWarehouse'"/></xsl:apply-templates>
        </xsl:otherwise>
      </xsl:choose>
      <xsl:for-each select="de:Bemerkung"><Remarks><xsl:value-of select="."/></Remarks></xsl:for-each>
    </xsl:element>
  </xsl:template>

  <xsl:template match="de:Bestaetigung">
    <Endorsement schemaVersion="1.0">
      <xsl:call-template name="header"/>
      <ExportAuthorizationRef>
        <Number><xsl:value-of select="de:Ausfuhrgenehmigung/@nummer"/></Number>
        <IssuingCountry><xsl:value-of select="map:code('countries', de:Ausfuhrgenehmigung/@land)"/></IssuingCountry>
      </ExportAuthorizationRef>
      <EndorsingAuthority><xsl:value-of select="de:BestaetigendeStelle"/></EndorsingAuthority>
      <xsl:for-each select="de:Eingangsdatum">
        <ReceiptDate><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></ReceiptDate>
      </xsl:for-each>
      <xsl:for-each select="de:AbgelaufenOhneEinfuhr">
        <ExpiredWithoutImport><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></ExpiredWithoutImport>
      </xsl:for-each>
      <Lines>
        <xsl:for-each select="de:Position">
          <Line number="{@nr}">
            <Substance><xsl:value-of select="map:code('substances', de:Stoff)"/></Substance>
            <Form><xsl:value-of select="map:code('forms', de:Zubereitungsform)"/></Form>
            <QuantityReceived unit="{map:code('units', de:EingangsMenge/@einheit)}"><xsl:value-of select="translate(de:EingangsMenge, ',', '.')"/></QuantityReceived>
            <xsl:apply-templates select="de:StaerkeJeEinheit"/>
          </Line>
        </xsl:for-each>
      </Lines>
      <xsl:for-each select="de:Bemerkung"><Remarks><xsl:value-of select="."/></Remarks></xsl:for-each>
    </Endorsement>
  </xsl:template>

  <xsl:template name="header">
    <DocumentNumber><xsl:value-of select="@nummer"/></DocumentNumber>
    <IssuingCountry><xsl:value-of select="map:code('countries', de:Behoerde/@land)"/></IssuingCountry>
    <IssuingAuthority><xsl:value-of select="de:Behoerde"/></IssuingAuthority>
    <IssueDate><xsl:call-template name="date"><xsl:with-param name="d" select="de:Ausstellungsdatum"/></xsl:call-template></IssueDate>
  </xsl:template>

  <xsl:template match="de:Einfuehrer | de:Ausfuehrer">
    <Name><xsl:value-of select="de:Firma"/></Name>
    <Address>
      <Street><xsl:value-of select="de:Strasse"/></Street>
      <City><xsl:value-of select="de:Ort"/></City>
      <xsl:for-each select="de:PLZ"><PostalCode><xsl:value-of select="."/></PostalCode></xsl:for-each>
      <Country><xsl:value-of select="map:code('countries', de:Land)"/></Country>
    </Address>
    <xsl:for-each select="de:Erlaubnis"><LicenceNumber><xsl:value-of select="."/></LicenceNumber></xsl:for-each>
  </xsl:template>

  <xsl:template match="de:Position" mode="line">
    <Line number="{@nr}">
      <Substance><xsl:value-of select="map:code('substances', de:Stoff)"/></Substance>
      <Convention><xsl:value-of select="map:code('substances', de:Stoff, 'convention')"/></Convention>
      <Schedule><xsl:value-of select="map:code('substances', de:Stoff, 'schedule')"/></Schedule>
      <Form><xsl:value-of select="map:code('forms', de:Zubereitungsform)"/></Form>
      <xsl:for-each select="de:Darreichungsform"><PharmaceuticalForm><xsl:value-of select="map:code('dosage_forms', .)"/></PharmaceuticalForm></xsl:for-each>
      <xsl:for-each select="de:Praeparat"><PreparationName><xsl:value-of select="."/></PreparationName></xsl:for-each>
      <Quantity unit="{map:code('units', de:Menge/@einheit)}"><xsl:value-of select="translate(de:Menge, ',', '.')"/></Quantity>
      <xsl:apply-templates select="de:StaerkeJeEinheit"/>
    </Line>
  </xsl:template>

  <xsl:template match="de:StaerkeJeEinheit">
    <StrengthPerUnit unit="{map:code('units', @einheit)}"><xsl:value-of select="translate(., ',', '.')"/></StrengthPerUnit>
  </xsl:template>

  <xsl:template match="*" mode="flag">
    <xsl:param name="name"/>
    <xsl:element name="{$name}">
      <xsl:choose><xsl:when test=". = 'ja'">true</xsl:when><xsl:otherwise>false</xsl:otherwise></xsl:choose>
    </xsl:element>
  </xsl:template>

  <!-- TT.MM.JJJJ -> JJJJ-MM-TT -->
  <xsl:template name="date">
    <xsl:param name="d"/>
    <xsl:value-of select="concat(substring($d, 7, 4), '-', substring($d, 4, 2), '-', substring($d, 1, 2))"/>
  </xsl:template>
</xsl:stylesheet>

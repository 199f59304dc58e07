<?xml version="1.0" encoding="UTF-8"?>
<!--
  i2es-hub canonical v1 -> BfArM BtM-Aussenhandel v1.
  Input: the hub's Message envelope or a bare canonical document. The output is
  a BtM-Aussenhandel file holding that one document (Genehmigung, Bestaetigung)
  or alert (Hinweis); findings that travel with a document become HubHinweise.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:c="urn:i2es-hub:canonical:1"
    xmlns:map="urn:i2es-hub:mapping"
    xmlns="urn:de:bfarm:btm-ah:1"
    exclude-result-prefixes="c map">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:template match="/c:Message">
    <BtMAussenhandel erstellt="{substring(c:Created, 1, 19)}" absender="i2es-hub">
      <xsl:apply-templates select="c:Payload/*" mode="doc"><xsl:with-param name="message" select="."/></xsl:apply-templates>
    </BtMAussenhandel>
  </xsl:template>

  <xsl:template match="/c:ImportAuthorization | /c:ExportAuthorization | /c:Endorsement">
    <BtMAussenhandel erstellt="{c:IssueDate}T00:00:00" absender="i2es-hub">
      <xsl:apply-templates select="." mode="doc"/>
    </BtMAussenhandel>
  </xsl:template>

  <xsl:template match="c:ImportAuthorization | c:ExportAuthorization" mode="doc">
    <xsl:param name="message"/>
    <Genehmigung art="{map:national('document_kinds', local-name())}" nummer="{c:DocumentNumber}">
      <xsl:call-template name="header"/>
      <GueltigAb><xsl:call-template name="date"><xsl:with-param name="d" select="c:Validity/c:From"/></xsl:call-template></GueltigAb>
      <GueltigBis><xsl:call-template name="date"><xsl:with-param name="d" select="c:Validity/c:Until"/></xsl:call-template></GueltigBis>
      <xsl:apply-templates select="c:Importer | c:Exporter"/>
      <xsl:apply-templates select="c:Lines/c:Line"/>
      <xsl:for-each select="c:ImportAuthorizationRef">
        <Einfuhrgenehmigung nummer="{c:Number}" land="{map:national('countries', c:IssuingCountry)}">
          <xsl:attribute name="datum"><xsl:call-template name="date"><xsl:with-param name="d" select="c:IssueDate"/></xsl:call-template></xsl:attribute>
          <xsl:value-of select="c:IssuingAuthority"/>
        </Einfuhrgenehmigung>
      </xsl:for-each>
      <xsl:for-each select="c:ExpectedDispatchDate">
        <Versanddatum><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></Versanddatum>
      </xsl:for-each>
      <xsl:apply-templates select="c:MultipleConsignments" mode="flag"><xsl:with-param name="name" select="'MehrereSendungen'"/></xsl:apply-templates>
      <xsl:apply-templates select="c:BondedWarehouse" mode="flag"><xsl:with-param name="name" select="'Zolllager'"/></xsl:apply-templates>
      <xsl:for-each select="c:Remarks"><Bemerkung><xsl:value-of select="."/></Bemerkung></xsl:for-each>
      <xsl:call-template name="notes"><xsl:with-param name="message" select="$message"/></xsl:call-template>
    </Genehmigung>
  </xsl:template>

  <xsl:template match="c:Endorsement" mode="doc">
    <xsl:param name="message"/>
    <Bestaetigung nummer="{c:DocumentNumber}">
      <xsl:call-template name="header"/>
      <Ausfuhrgenehmigung nummer="{c:ExportAuthorizationRef/c:Number}" land="{map:national('countries', c:ExportAuthorizationRef/c:IssuingCountry)}"/>
      <BestaetigendeStelle><xsl:value-of select="c:EndorsingAuthority"/></BestaetigendeStelle>
      <xsl:for-each select="c:ReceiptDate"><Eingangsdatum><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></Eingangsdatum></xsl:for-each>
      <xsl:for-each select="c:ExpiredWithoutImport"><AbgelaufenOhneEinfuhr><xsl:call-template name="date"><xsl:with-param name="d" select="."/></xsl:call-template></AbgelaufenOhneEinfuhr></xsl:for-each>
      <xsl:apply-templates select="c:Lines/c:Line"/>
      <xsl:for-each select="c:Remarks"><Bemerkung><xsl:value-of select="."/></Bemerkung></xsl:for-each>
      <xsl:call-template name="notes"><xsl:with-param name="message" select="$message"/></xsl:call-template>
    </Bestaetigung>
  </xsl:template>

  <xsl:template match="c:Alert" mode="doc">
    <xsl:param name="message"/>
    <Hinweis id="{c:AlertId}" nachricht="{$message/c:MessageId}">
      <Code><xsl:value-of select="c:Code"/></Code>
      <Schwere><xsl:value-of select="c:Severity"/></Schwere>
      <Zeitpunkt><xsl:value-of select="c:Issued"/></Zeitpunkt>
      <Vorgang art="{c:Document/c:Type}" land="{map:national('countries', c:Document/c:IssuingCountry)}"><xsl:value-of select="c:Document/c:Number"/></Vorgang>
      <xsl:for-each select="c:Line"><Position><xsl:value-of select="."/></Position></xsl:for-each>
      <Text><xsl:value-of select="c:Message"/></Text>
      <xsl:for-each select="c:Figure">
        <Wert name="{@name}">
          <xsl:if test="@unit"><xsl:attribute name="einheit"><xsl:value-of select="@unit"/></xsl:attribute></xsl:if>
          <xsl:value-of select="."/>
        </Wert>
      </xsl:for-each>
    </Hinweis>
  </xsl:template>

  <xsl:template match="*" mode="doc" priority="-1">
    <xsl:call-template name="unsupported"/>
  </xsl:template>

  <xsl:template match="/*" priority="-1">
    <xsl:call-template name="unsupported"/>
  </xsl:template>

  <xsl:template name="unsupported">
    <xsl:message terminate="yes"><xsl:value-of select="local-name()"/> has no BtM-Aussenhandel form; Germany receives import and export authorizations, endorsements and alerts</xsl:message>
  </xsl:template>

  <xsl:template name="header">
    <Behoerde land="{map:national('countries', c:IssuingCountry)}"><xsl:value-of select="c:IssuingAuthority"/></Behoerde>
    <Ausstellungsdatum><xsl:call-template name="date"><xsl:with-param name="d" select="c:IssueDate"/></xsl:call-template></Ausstellungsdatum>
  </xsl:template>

  <xsl:template name="notes">
    <xsl:param name="message"/>
    <xsl:if test="$message">
      <HubHinweise nachricht="{$message/c:MessageId}">
        <xsl:for-each select="$message/c:Findings/c:Finding">
          <Befund code="{@code}" schwere="{@severity}">
            <xsl:if test="@line"><xsl:attribute name="position"><xsl:value-of select="@line"/></xsl:attribute></xsl:if>
            <xsl:value-of select="."/>
          </Befund>
        </xsl:for-each>
      </HubHinweise>
    </xsl:if>
  </xsl:template>

  <xsl:template match="c:Importer | c:Exporter">
    <xsl:element name="{substring('EinfuehrerAusfuehrer', 1 + 10 * (local-name() = 'Exporter'), 10)}">
      <Firma><xsl:value-of select="c:Name"/></Firma>
      <Strasse>
        <xsl:for-each select="c:Address/c:Street"><xsl:if test="position() &gt; 1">, </xsl:if><xsl:value-of select="."/></xsl:for-each>
      </Strasse>
      <xsl:for-each select="c:Address/c:PostalCode"><PLZ><xsl:value-of select="."/></PLZ></xsl:for-each>
      <Ort><xsl:value-of select="c:Address/c:City"/></Ort>
      <Land><xsl:value-of select="map:national('countries', c:Address/c:Country)"/></Land>
      <xsl:for-each select="c:LicenceNumber"><Erlaubnis><xsl:value-of select="."/></Erlaubnis></xsl:for-each>
    </xsl:element>
  </xsl:template>

  <xsl:template match="c:Line">
    <Position nr="{@number}">
      <Stoff><xsl:value-of select="map:national('substances', c:Substance)"/></Stoff>
      <Zubereitungsform><xsl:value-of select="map:national('forms', c:Form)"/></Zubereitungsform>
      <xsl:for-each select="c:PharmaceuticalForm"><Darreichungsform><xsl:value-of select="map:national('dosage_forms', .)"/></Darreichungsform></xsl:for-each>
      <xsl:for-each select="c:PreparationName"><Praeparat><xsl:value-of select="."/></Praeparat></xsl:for-each>
      <xsl:for-each select="c:Quantity"><Menge einheit="{map:national('units', @unit)}"><xsl:value-of select="translate(., '.', ',')"/></Menge></xsl:for-each>
      <xsl:for-each select="c:QuantityReceived"><EingangsMenge einheit="{map:national('units', @unit)}"><xsl:value-of select="translate(., '.', ',')"/></EingangsMenge></xsl:for-each>
      <xsl:for-each select="c:StrengthPerUnit"><StaerkeJeEinheit einheit="{map:national('units', @unit)}"><xsl:value-of select="translate(., '.', ',')"/></StaerkeJeEinheit></xsl:for-each>
    </Position>
  </xsl:template>

  <xsl:template match="*" mode="flag">
    <xsl:param name="name"/>
    <xsl:element name="{$name}">
      <xsl:choose><xsl:when test=". = 'true' or . = '1'">ja</xsl:when><xsl:otherwise>nein</xsl:otherwise></xsl:choose>
    </xsl:element>
  </xsl:template>

  <!-- JJJJ-MM-TT -> TT.MM.JJJJ -->
  <xsl:template name="date">
    <xsl:param name="d"/>
    <xsl:value-of select="concat(substring($d, 9, 2), '.', substring($d, 6, 2), '.', substring($d, 1, 4))"/>
  </xsl:template>
</xsl:stylesheet>

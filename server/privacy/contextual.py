"""Recognisers that find personal data by what the customer wrote next to it, in en/de/es/fr/pt.

Identifiers (account, customer, order, invoice, passport, ID card, licence plate), secrets
(passwords, PINs, one-time codes) and dates of birth have no shape of their own: "4711-0815" is
an order number after "Bestellung", a part number elsewhere. What marks them is the label, so
these rules read `label [connector words] value`, where the value must still look like one
(identifiers carry digits, a date parses as a date). Error codes, versions and label words with
no value after them ("order confirmation", "Passwort vergessen") therefore survive.

Postal addresses are found by their country's street and postcode shapes; obfuscated e-mail
addresses ("anna (at) web [dot] de") by the spelled-out separators.
"""

from __future__ import annotations

import regex
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from server.privacy.recognizers import _NOT_NAMES, _result

_W = r"[\p{L}\p{N}_]"  # a word character, Unicode-aware


def _alt(words: str) -> str:
    """`a|b c|d` (whitespace-separated phrases joined by |) -> a regex alternation, longest first;
    spaces inside a phrase match any run of whitespace."""
    phrases = [p.strip() for p in words.replace("\n", " ").split("|") if p.strip()]
    return "|".join(
        r"\s+".join(regex.escape(part) for part in p.split()) for p in sorted(phrases, key=len, reverse=True)
    )


# Words that may stand between a label and its value: "order no. 123", "Kunden-Nr.: 123",
# "número de cliente es 123", "my account ID is 123", "la commande n° 123", "(#123)".
_CONNECTOR = (
    r"(?i:[:#=(,]|n[º°o]\.?|n\.\s?[º°o]\.?|nr\.?|no\.?|num\.?|#|"
    r"(?:numbers?|nummer|numéro|número|numero|id|ref|reference|référence|referencia|referência|is|ist|lautet|"
    r"es|est|é|era|war|was|de|del|da|do|du|of|my|the|your|mein|meine|meiner|ihr|ihre|mi|su|mon|ma|votre|"
    r"o|a|la|el|le|seu|sua|client|cliente|customer|kunden|bancaire|bancária|bank|-nr)(?!" + _W + r")\.?)"
)
_CONNECTORS = r"(?:[ \t]*" + _CONNECTOR + r"){0,5}[ \t]*"

# An identifier (its first group carries a digit or is a short capital prefix, so "Mon Brother
# HL-L2350DW" after "compte." is not one): alphanumeric groups joined by - / . and, after single spaces, more groups that
# carry a digit or are short capital blocks ("FT 2025A/5737", "RP 04 31 88 A", "M NW 516").
_ID_VALUE = (
    r"(?<![\p{L}\p{N}])(?:(?=[A-Za-z]*\d)[A-Za-z0-9]+|[A-Z]{1,4}(?=[ \-/.]))(?:[-/.][A-Za-z0-9]+)*"
    r"(?:[ ](?:(?=[A-Za-z]*\d)[A-Za-z0-9]+|(?!I(?![\p{L}\p{N}]))[A-Z]{1,3}(?![\p{L}\p{N}]))(?:[-/.][A-Za-z0-9]+)*)*"
    r"(?![\p{L}\p{N}])"
)

# entity -> (label alternation, minimum digits in the value)
_ID_LABELS: dict[str, tuple[str, int]] = {
    "ACCOUNT_NUMBER": (
        _alt("""account | acct | a/c | bank account | girokonto | konto | kontonummer | kto | kto.-nr | kto-nr |
        bankkonto | sparkonto | cuenta | cuenta bancaria | compte | compte bancaire | conta | conta bancária | conta corrente"""),
        2,
    ),
    "CUSTOMER_ID": (
        _alt("""customer | customer number | customer id | customer ref | client | client ref | client id | member |
        membership | membership no | member id | user id | subscriber | contract | subscription id | kunde |
        kunden-nr | kundennr | kundennummer | kunden-id | kundenkonto | mitgliedsnummer | mitglieds-nr |
        vertragsnummer | vertrags-nr | vertrag | abonummer | cliente | nº de cliente | socio | sócio | contrato |
        abonado | réf. client | ref. client | référence client | numéro client | adhérent | d'adhérent | contrat |
        abonné | assinante | utente | ref | reference | customer reference | your ref | our ref | referenz |
        aktenzeichen | az. | kd.-nr | kd-nr | kdnr | kd.nr | referencia | référence | referência"""),
        2,
    ),
    "ORDER_ID": (
        _alt("""order | order no | purchase | shipment | tracking | tracking number | booking | reservation |
        bestellung | bestell-nr | bestellnummer | bestellnr | auftrag | auftragsnummer | auftrags-nr | sendung |
        sendungsnummer | buchung | buchungsnummer | pedido | compra | envío | envio | reserva | localizador |
        commande | achat | colis | suivi | réservation | encomenda | rastreio | rastreamento"""),
        2,
    ),
    "INVOICE_NUMBER": (
        _alt("""invoice | invoice no | bill | receipt | credit note | rechnung | rechnungsnummer | rechnungs-nr |
        rechnungsnr | quittung | beleg | gutschrift | factura | recibo | abono | facture | avoir | reçu | fatura |
        nota fiscal | fatura-recibo"""),
        2,
    ),
    # A mistyped card number fails Luhn but is still the customer's card: after a card label any
    # 13-19 digits in groups go.
    "CREDIT_CARD": (
        _alt("""card | card number | credit card | debit card | visa | mastercard | amex | kreditkarte | karte |
        kartennummer | ec-karte | tarjeta | tarjeta de crédito | número de tarjeta | carte | carte bancaire |
        numéro de carte | cb | cartão | cartão de crédito | número do cartão"""),
        13,
    ),
    "PASSPORT": (
        _alt("""passport | passport no | passport number | reisepass | reisepass-nr | reisepassnummer | passnummer |
        pass-nr | pasaporte | passeport | passaporte"""),
        1,
    ),
    "NATIONAL_ID": (
        _alt("""national insurance | national insurance number | ni number | nino | national id | id number |
        id card | identity card | identity number | social security | social security number | ssn | tax id |
        personalausweis | personalausweisnummer | ausweis | ausweisnummer | ausweis-nr | steuer-id |
        steuer-identifikationsnummer | steueridentifikationsnummer | steuernummer | sozialversicherungsnummer |
        sv-nummer | dni | nie | nif | dni/nif | documento | documento de identidad | cédula | curp | rfc | nss |
        numéro de sécurité sociale | sécurité sociale | sécu | nir | carte d'identité | cni | cpf | cartão de cidadão |
        contribuinte | número de contribuinte | niss | cartão do cidadão"""),
        1,
    ),
    "LICENSE_PLATE": (
        _alt("""registration | reg | vehicle reg | number plate | licence plate | license plate | plate | kennzeichen |
        kfz-kennzeichen | nummernschild | autokennzeichen | matrícula | matricula | placa | plaque |
        plaque d'immatriculation | immatriculée | immatriculé | immatriculation"""),
        1,
    ),
}

# --- secrets ---------------------------------------------------------------------------------------

_PASSWORD_LABEL = _alt("""password | passwort | kennwort | passwd | pwd | pw | passcode | passphrase | contraseña |
contrasena | clave | clave de acceso | mot de passe | mdp | senha | palavra-passe | palavra passe | login password""")
_QUOTED = r"(?:\"([^\"\n]{1,64})\"|'([^'\n]{1,64})'|„([^“”\n]{1,64})[“”]|“([^”\n]{1,64})”|«\s?([^»\n]{1,64}?)\s?»|‘([^’\n]{1,64})’|`([^`\n]{1,64})`)"
# What follows "password is" without being one.
_NOT_SECRETS = frozenset(
    """wrong incorrect invalid correct expired not still the my your a an too being reset changed empty required
    blocked locked accepted rejected falsch ungültig abgelaufen nicht noch gesperrt zurückgesetzt korrekt richtig
    incorrecta inválida invalida caducada no sigue bloqueada correcta incorrect invalide expiré expirée pas bloqué
    toujours errada inválida expirada não bloqueada correta ainda""".split()
)
_CODE_LABEL = _alt("""pin | pin code | pin-code | tan | mtan | otp | 2fa code | one-time code | one time code |
one-time password | one-time passcode | verification code | security code | confirmation code | sms code |
login code | access code | auth code | authentication code | bestätigungscode | sicherheitscode | einmalcode |
einmalpasswort | sms-code | zugangscode | freischaltcode | pin-nummer | código de verificación | código de seguridad |
código sms | código pin | código de acceso | código de confirmación | clave sms | code de vérification |
code de sécurité | code pin | code sms | code de confirmation | code à usage unique | code reçu par sms |
code d'accès | código de verificação | código de segurança | código de confirmação | código de acesso""")
_BARE_CODE = r"(?:code|código|codigo|Code)"
_CODE_VALUE = r"(?<!\d)(\d{3,4}[ -]\d{3,4}|\d{4,8})(?![\d\p{L}])"
# "error code 1603", "exit code 137": a code after these words is the error, not a secret.
_ERRORISH = regex.compile(r"(?i)(?:error|err|exit|status|return|http|fehler|erreur|erro|fault|event|stop)\W{0,3}$")
# A bare "code 4711" is a one-time code only when the sentence says it arrived or expired.
_RECEIVED = regex.compile(
    r"(?i)\b(?:sms|text|received|got|sent|expired|recebi|recibí|me llegó|llegó|reçu|envoyé|erhalten|bekommen|"
    r"abgelaufen|caducó|caducado|expirou|expiré|chegou|twice|zweimal|dos veces|deux fois|duas vezes)\b"
)

# --- dates of birth ----------------------------------------------------------------------------------

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    "januar|jänner|februar|märz|mai|juni|juli|oktober|dezember|"
    "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|"
    "janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|"
    "janeiro|fevereiro|março|marco|maio|junho|julho|setembro|outubro|novembro|dezembro"
)
_DATE = (
    r"(?<![\p{L}\p{N}])(?:\d{1,2}[./\-]\d{1,2}[./\-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2}|"
    r"\d{1,2}(?:\.|er|st|nd|rd|th)?\s+(?:de\s+)?(?i:" + _MONTHS + r")\.?,?\s+(?:de\s+)?\d{4}|"
    r"(?i:" + _MONTHS + r")\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})(?![\p{L}\p{N}])"
)
_DOB_LABEL = _alt("""date of birth | birth date | birthdate | birthday | dob | d.o.b. | d.o.b | born | born on | born in |
geburtsdatum | geburtstag | geb. | geb | geboren | geboren am | fecha de nacimiento | fecha nac. | f. nac. | f. nac |
f.nac. | nacimiento | nacido | nacida | nací | naci | date de naissance | date de naiss. | date naiss. | naissance |
né | née | né le | née le | data de nascimento | data nasc. | data de nasc. | d.n. | nascimento | nascido | nascida |
nasci""")
_DOB_CONNECTORS = r"(?:[ \t]*(?:[:=]|(?:on|the|am|el|le|em|a|is|ist|es|est|é|à|in|en)(?![\p{L}\p{N}])))*[ \t]*"

# --- obfuscated e-mail addresses -----------------------------------------------------------------------

_AT_WORD = r"(?:at|ät|arroba|arobase|chiocciola|chez|AT)"
_DOT_WORD = r"(?:dot|punkt|punto|point|ponto|DOT)"
_LOCAL = r"(?<![\w.+\-@])[A-Za-z0-9][A-Za-z0-9._+\-]*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_TLD = r"[A-Za-z]{2,12}(?![\w])"
# Spelled-out addresses end in a real top-level domain ("at this point and" is prose).
_COMMON_TLD = r"(?i:com|net|org|info|biz|io|me|eu|de|at|ch|es|fr|pt|br|be|lu|nl|it|uk|ie|us|ca|mx|ar|co)(?![\w])"
_BRACKETED_AT = r"\s*[(\[{<]\s*(?:" + _AT_WORD + r"|a)\s*[)\]}>]\s*"
_BRACKETED_DOT = r"\s*[(\[{<]\s*" + _DOT_WORD + r"\s*[)\]}>]\s*"
_OBFUSCATED_EMAILS = [
    # the whole link, not only the address in it
    regex.compile(r"(?i)mailto:[A-Za-z0-9._%+\-]+@" + _LABEL + r"(?:\." + _LABEL + r")+"),
    # name (at) host.tld / name [at] host [dot] tld
    regex.compile(
        _LOCAL
        + _BRACKETED_AT
        + _LABEL
        + r"(?:(?:\.|"
        + _BRACKETED_DOT
        + r")"
        + _LABEL
        + r")*(?:\.|"
        + _BRACKETED_DOT
        + r")"
        + _TLD
    ),
    # name at host dot tld: bare words need the spelled-out dot too ("look at example.com" is prose)
    regex.compile(
        _LOCAL
        + r"\s+"
        + _AT_WORD
        + r"\s+"
        + _LABEL
        + r"(?:\s+"
        + _DOT_WORD
        + r"\s+"
        + _LABEL
        + r")*\s+"
        + _DOT_WORD
        + r"\s+"
        + _COMMON_TLD
    ),
    # name @ host.tld (spaces around the @)
    regex.compile(_LOCAL + r"\s+@\s*" + _LABEL + r"(?:\." + _LABEL + r")*\." + _TLD),
    regex.compile(_LOCAL + r"\s*@\s+" + _LABEL + r"(?:\." + _LABEL + r")*\." + _TLD),
]


def _sentence(text: str, start: int, end: int) -> str:
    before = max(text.rfind(ch, 0, start) for ch in ".!?\n")
    after = [i for i in (text.find(ch, end) for ch in ".!?\n") if i >= 0]
    return text[before + 1 : min(after) if after else len(text)]


class LabelledValueRecognizer(LocalRecognizer):
    """Identifiers, secrets and dates of birth after the words customers label them with."""

    def __init__(self, supported_language: str):
        self._ids = [
            (
                entity,
                regex.compile(
                    r"(?<![\p{L}\p{N}])(?i:"
                    + labels
                    + r")(?:(?<=(?i:nr|no|kto|ref|reg|num))\.)?(?:-?(?i:nr|no|id|nummer)\.?)?"
                    + r"(?:[^.!?\n]{0,40}?(?i:number|nummer|numéro|número|numero|n[º°o]\.?|nr\.|no\.)(?![\p{L}]))??"
                    + _CONNECTORS
                    + r"(?:#\s?)?("
                    + _ID_VALUE
                    + ")"
                ),
                min_digits,
            )
            for entity, (labels, min_digits) in _ID_LABELS.items()
        ]
        self._password_quoted = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:" + _PASSWORD_LABEL + r")(?![\p{L}\p{N}])[^\n\"'„“«‘`.!?]{0,40}?" + _QUOTED
        )
        self._password_plain = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:"
            + _PASSWORD_LABEL
            + r"|pass)(?![\p{L}\p{N}])(?:[ \t]+\p{L}+(?=[ \t]*[:=])){0,2}[ \t]*"
            r"(?:[:=]|(?i:is|ist|lautet|es|est|é|era|war|was|était|:)(?![\p{L}\p{N}]))[ \t]*:?[ \t]*([^\s\"'„“«‘`]{3,64})"
        )
        # "the password given was X", "a senha Alfama!1985": a few words, or none, then a value
        # that mixes letters with digits or symbols, as passwords do and words do not.
        self._password_loose = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:" + _PASSWORD_LABEL + r")(?![\p{L}\p{N}])(?:[ \t]+[\p{L}']+){0,3}?[ \t]*:?[ \t]+"
            r"((?=[^\s]*\p{L})(?=[^\s]*[\d!#$%&*?@+^~])[^\s\"'„“«‘`]{6,64})"
        )
        self._code = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:" + _CODE_LABEL + r")(?![\p{L}\p{N}])" + _CONNECTORS + _CODE_VALUE
        )
        # "the code I got is 839120", "o código que recebi foi 839120"
        self._code_clause = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:" + _CODE_LABEL + r"|" + _BARE_CODE + r")(?![\p{L}\p{N}])[^.!?\n\d]{1,40}?"
            r"(?<![\p{L}])(?i:is|was|ist|lautet|war|es|era|fue|est|était|é|foi|:)[ \t]*:?[ \t]*" + _CODE_VALUE
        )
        self._bare_code = regex.compile(
            r"(?<![\p{L}\p{N}])" + _BARE_CODE + r"(?![\p{L}\p{N}])" + _CONNECTORS + _CODE_VALUE
        )
        self._dob = regex.compile(
            r"(?<![\p{L}\p{N}])(?i:" + _DOB_LABEL + r")(?![\p{L}\p{N}])" + _DOB_CONNECTORS + "(" + _DATE + ")"
        )
        self._dob_after = regex.compile(
            "(" + _DATE + r")[ \t]+(?i:geboren|born|nascid[oa]|nacid[oa]|née?)(?![\p{L}\p{N}])"
        )
        super().__init__(
            supported_entities=[*_ID_LABELS, "PASSWORD", "PIN_CODE", "DATE_OF_BIRTH"],
            supported_language=supported_language,
            name="LabelledValueRecognizer",
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for entity, pattern, min_digits in self._ids:
            for m in pattern.finditer(text, overlapped=True):
                value = m.group(1)
                digits = sum(ch.isdigit() for ch in value)
                if entity == "CREDIT_CARD" and (digits > 19 or not regex.fullmatch(r"[\d \-]+", value)):
                    continue
                if digits >= min_digits and sum(ch.isalnum() for ch in value) >= 4:
                    results.append(_result(self, entity, m.start(1), m.end(1), 0.8))
        for m in self._password_quoted.finditer(text):
            g = next(i for i in range(1, 8) if m.group(i) is not None)
            results.append(_result(self, "PASSWORD", m.start(g), m.end(g), 0.9))
        for m in self._password_plain.finditer(text):
            value = m.group(1).rstrip(".,;:)»\"'")
            if len(value) >= 3 and value.lower() not in _NOT_SECRETS:
                results.append(_result(self, "PASSWORD", m.start(1), m.start(1) + len(value), 0.85))
        for m in self._password_loose.finditer(text):
            value = m.group(1).rstrip(".,;:!?)»\"'")  # "password reset?" ends a sentence, it is no password
            if len(value) < 6 or not regex.search(r"[\d!#$%&*?@+^~]", value) or not regex.search(r"\p{L}", value):
                continue
            results.append(_result(self, "PASSWORD", m.start(1), m.start(1) + len(value), 0.8))
        for m in self._code.finditer(text):
            results.append(_result(self, "PIN_CODE", m.start(1), m.end(1), 0.85))
        for m in self._code_clause.finditer(text):
            value = m.group(1)
            if sum(ch.isdigit() for ch in value) >= 6 or _RECEIVED.search(_sentence(text, m.start(), m.end())):
                results.append(_result(self, "PIN_CODE", m.start(1), m.end(1), 0.7))
        for m in self._bare_code.finditer(text):
            if _ERRORISH.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            value = m.group(1)
            labelled = ":" in text[m.start() : m.start(1)]  # "code: 4711" is a code given, not one shown
            if (
                sum(ch.isdigit() for ch in value) >= 6
                or labelled
                or _RECEIVED.search(_sentence(text, m.start(), m.end()))
            ):
                results.append(_result(self, "PIN_CODE", m.start(1), m.end(1), 0.7))
        for pattern in (self._dob, self._dob_after):
            for m in pattern.finditer(text):
                results.append(_result(self, "DATE_OF_BIRTH", m.start(1), m.end(1), 0.9))
        return results


class ObfuscatedEmailRecognizer(LocalRecognizer):
    """E-mail addresses written to dodge harvesters: "anna (at) web.de", "x [at] y [dot] com",
    "x at y dot com", "x @ y.com"."""

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entities=["EMAIL_ADDRESS"],
            supported_language=supported_language,
            name="ObfuscatedEmailRecognizer",
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        return [
            _result(self, "EMAIL_ADDRESS", m.start(), m.end(), 0.9)
            for p in _OBFUSCATED_EMAILS
            for m in p.finditer(text)
        ]


# --- postal addresses ----------------------------------------------------------------------------------

_CAP = r"\p{Lu}[\p{L}'’\-]*\.?"  # a capitalised word (Mühlbach, O'Connell, St.)
_PART = r"(?:de|del|la|las|los|el|da|das|do|dos|du|des|le|les|l'|d'|von|der|am|an|im|zum|zur|of|the|y|e|et|sur|en)"
_NAME_WORDS = r"(?:(?:" + _CAP + r"|" + _PART + r")[ \t]+){0,4}" + _CAP
# A house number: not a year ("Im Dezember 2023") and not a quantity ("Speicherplatz 5 GB").
_HOUSE = r"(?!(?:19|20)\d\d(?!\d))\d{1,4}(?:[ \t]?[a-zA-Z](?![\p{L}]))?(?:[ \t]*(?:bis|ter|quater)(?![\p{L}]))?(?![ \t]*(?:GB|MB|TB|KB|%|x(?![\p{L}])|€|EUR|Min|min))"
_EN_STREET = r"(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Lane|Ln\.?|Drive|Dr\.?|Boulevard|Blvd\.?|Way|Court|Ct\.?|Place|Pl\.?|Terrace|Close|Crescent|Square|Parkway|Pkwy\.?|Highway|Hwy\.?|Row|Gardens|Grove|Hill|Walk|Mews)"
_FR_STREET = r"(?i:rue|avenue|av\.|boulevard|bd\.?|impasse|place|chemin|allée|allee|quai|route|cours|square|passage|faubourg|chaussée|rond-point)"
_PREFIX_STREET = (
    r"(?:Calle|C/|Avda\.?|Avenida|Av\.|Paseo|Pº|Plaza|Pza\.?|Camino|Ronda|Carrer|Travesía|Carretera|Ctra\.?|Glorieta|"
    r"Rua|R\.|Travessa|Largo|Praça|Estrada|Alameda|Rodovia|Calçada|Beco|Via|Viale|Piazza|"
    r"Rue|Avenue|Chaussée|Boulevard|Place|Quai|Chemin|Allée|"
    r"Am|An der|An den|Auf der|Auf dem|Im|In der|Zum|Zur|Unter den|Hinter der)"
)
_DE_SUFFIX = r"(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|steig|pfad|markt|graben)"
_UNIT = r"(?:Flat|Apt\.?|Apartment|Suite|Unit|Wohnung|Whg\.?|Piso|Depto\.?|Apto\.?|Bloco|Bâtiment|Bât\.?)"
_STREETS = [
    # 87 Church Lane / 120 Cedar Lane, Apt 5 / Flat 2, 14 High Street
    r"(?:"
    + _UNIT
    + r"[ \t]+\w+,?[ \t]+)?"
    + _HOUSE
    + r",?[ \t]+"
    + _NAME_WORDS
    + r"[ \t]+"
    + _EN_STREET
    + r"(?![\p{L}])",
    # 12 rue des Lilas / 3 bis avenue Jean Jaurès
    _HOUSE + r",?[ \t]+" + _FR_STREET + r"[ \t]+" + _NAME_WORDS + r"(?![\p{L}])",
    # Calle Mayor 15 / Rua das Flores, 45 / Rue Neuve 45 / Am Mühlbach 91a
    r"(?<![\p{L}])"
    + _PREFIX_STREET
    + r"[ \t]+"
    + _NAME_WORDS
    + r",?[ \t]+(?:n\.?[º°o]\.?[ \t]*)?"
    + _HOUSE
    + r"(?![\p{N}])",
    # Hauptstraße 12 / Goethestr. 39 / Lange Reihe 5-7
    r"(?<![\p{L}])(?:"
    + _CAP
    + r"[ \t\-])?\p{Lu}[\p{L}\-]*"
    + _DE_SUFFIX
    + r"[ \t]*"
    + _HOUSE
    + r"(?:-\d{1,4})?(?![\p{N}])",
    # Rosenheimer Straße 145 / Alte Gasse 3
    r"(?<![\p{L}])"
    + _CAP
    + r"[ \t](?:Straße|Strasse|Str\.|Weg|Allee|Platz|Gasse|Damm|Ufer|Chaussee|Steig|Pfad|Markt|Graben)[ \t]*"
    + _HOUSE
    + r"(?:-\d{1,4})?(?![\p{N}])",
]
_CITY = r"(?:\p{Lu}[\p{L}'’\-]+|\p{Lu}{2,})(?:[ \t\-]+(?:(?:am|an der|im|sur|de|del|la|le|en|do|da|dos|das)[ \t]+)?(?:\p{Lu}[\p{L}'’\-]+|\p{Lu}{2,}))*"
_POSTCODES = [
    r"(?<![\p{L}\p{N}])(?:[A-Z]{1,2}-)?\d{5}[ \t]+" + _CITY,  # DE/FR/ES/IT: 10115 Berlin, 75011 PARIS
    r"(?<![\p{L}\p{N}])(?:A|CH|B|L|D)-\d{4,5}[ \t]+" + _CITY,  # A-1010 Wien, CH-8001 Zürich
    r"(?<![\p{L}\p{N}\-])\d{4}-\d{3}(?![\p{L}\p{N}\-])(?:[ \t]+" + _CITY + r")?",  # PT 1250-146 Lisboa
    r"(?<![\p{L}\p{N}\-])(?:CEP:?[ \t]*)?\d{5}-\d{3}(?![\p{L}\p{N}\-])",  # BR CEP
    r"(?<![\p{L}\p{N}])C\.?[ \t]?P\.?[ \t]*\d{5}(?:,[ \t]*" + _CITY + r")?",  # MX C.P. 06700, CDMX
    r"(?<![\p{L}\p{N}])[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?(?![\p{N}])",  # US state + ZIP
    r"(?<![\p{L}\p{N}])[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d(?!GB|MB|KB|TB|PB)[ABD-HJLNP-UW-Z]{2}(?![\p{L}\p{N}])",  # UK postcode
]
# A four-digit postcode + town is only an address right after a street (alone it is "2024 Microsoft").
_SHORT_POSTCODE = r"(?<![\p{L}\p{N}])\d{4}[ \t]+" + _CITY
_SENTENCE_BREAK = regex.compile(r"[.!?][ \t]+\p{Lu}\p{Ll}+[ \t]+\p{Ll}")


def _trim_city(text: str, start: int, end: int) -> int:
    """Cut a town name where running text resumes: "49543 Frankfurt am Main Mein Jabra" ends at "Main"."""
    kept = end
    count = 0
    for word in regex.finditer(r"[\p{L}'’\-]+", text[start:end]):
        if word.group()[0].isupper():
            count += 1
            if word.group() in _NOT_NAMES or count > 3:
                kept = start + word.start()
                break
    return len(text[:kept].rstrip(" \t")) if kept != end else end


class AddressRecognizer(LocalRecognizer):
    """Street + house number and postcode + town, joined into one span when they belong together."""

    def __init__(self, supported_language: str):
        self._streets = [regex.compile(p) for p in _STREETS]
        self._postcodes = [regex.compile(p) for p in _POSTCODES]
        self._tail = regex.compile(r"(?:" + "|".join(_POSTCODES + [_SHORT_POSTCODE]) + ")")
        super().__init__(
            supported_entities=["ADDRESS"], supported_language=supported_language, name="AddressRecognizer"
        )

    def load(self) -> None:
        pass

    def _postcode_after(self, text: str, pos: int) -> int | None:
        """End of a postcode (+ town) that follows a street within a short address-like gap."""
        window = text[pos : pos + 80]
        for m in self._tail.finditer(window):
            gap = window[: m.start()]
            if "\n\n" in gap or _SENTENCE_BREAK.search(gap) or len(gap) > 45:
                return None
            return _trim_city(text, pos + m.start(), pos + m.end())
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for p in self._streets:
            for m in p.finditer(text, overlapped=True):
                end = self._postcode_after(text, m.end())
                results.append(_result(self, "ADDRESS", m.start(), end or m.end(), 0.75))
        for p in self._postcodes:
            for m in p.finditer(text):
                results.append(_result(self, "ADDRESS", m.start(), _trim_city(text, m.start(), m.end()), 0.6))
        return results

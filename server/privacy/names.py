"""Person names without an NER model: a first name from a multilingual list, then surnames.

The cue recogniser (recognizers.CueNameRecognizer) finds names after "Dear", "my name is" and
titles; this one finds them where no cue announces them ("I spoke to Amelia Baker yesterday"),
in capitals ("MARIE WOLF"), inverted ("Baker, Amelia") and in lower case after a
self-introduction ("this is grace kelly", "ich bin heike neumann"). A listed first name alone
is not enough in running text: it must be followed by a capitalised surname that is not a
common word, or sit after an introduction, so "Will", "Grace period" or "Mark as read" survive.
"""

from __future__ import annotations

import regex
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from server.privacy.recognizers import _NOT_NAMES, _PARTICLES, _result

# Common given names in the markets the tickets come from (en: UK/US/IE, de: DE/AT/CH, es: ES/MX,
# fr: FR/BE/CH, pt: PT/BR), lower-cased and accent-folded forms both listed where they differ.
_FIRST_NAMES = frozenset(
    """
    james john robert michael william david richard joseph thomas charles christopher daniel matthew anthony mark
    donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward jason jeffrey ryan jacob gary
    nicholas eric jonathan stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick raymond
    jack dennis jerry tyler aaron jose adam nathan henry douglas zachary peter kyle noah ethan jeremy walter christian
    keith roger terry austin sean gerald carl harold dylan arthur lawrence jordan jesse bryan billy bruce gabriel joe
    logan alan juan albert willie elijah wayne randy vincent mason roy ralph bobby russell bradley philip eugene liam
    oliver harry charlie oscar leo alfie freddie archie theo arlo finley jude rory callum connor declan ciaran niall
    mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty sandra margaret ashley
    kimberly emily donna michelle carol amanda melissa deborah stephanie dorothy rebecca sharon laura cynthia amy
    kathleen angela shirley brenda emma anna pamela nicole samantha katherine christine helen debra rachel carolyn
    janet maria catherine heather diane olivia julie joyce victoria ruth virginia lauren kelly christina joan evelyn
    judith andrea hannah megan cheryl jacqueline martha madison teresa gloria sara janice ann kathryn abigail sophia
    frances jean alice judy isabella julia grace amber denise danielle marilyn beverly charlotte natalie theresa
    diana brittany doris kayla alexis lori marie amelia isla ava mia isabelle poppy ella lily evie sophie chloe
    freya ivy florence willow rosie phoebe matilda harriet imogen niamh aoife siobhan saoirse orla zoe holly
    lukas leon luca finn paul jonas elias ben luis maximilian felix noah henry emil anton theo moritz jakob niklas
    tim tobias julian jan philipp david fabian florian sebastian simon dominik jannik marcel dennis kevin sven
    matthias andreas michael thomas stefan christian markus martin frank jürgen juergen uwe klaus dieter wolfgang
    günter guenter horst helmut bernd rainer manfred gerhard hans peter karl heinz werner dirk jörg joerg ralf
    torsten thorsten holger volker olaf heiko kai lars nils malte hendrik till jens
    mia emma hannah sofia anna lea emilia marie lena leonie lina ella clara amelie luisa johanna laura lara sarah
    julia lisa katharina sabine ursula birgit petra monika claudia susanne andrea stefanie nicole heike anja karin
    renate gabriele brigitte ingrid helga christa elke silke kerstin tanja sandra melanie jana nadine daniela
    franziska greta frieda ida mathilda charlotte paula jule maja lotte marlene
    josé jose antonio manuel francisco juan david javier daniel carlos jesús jesus alejandro miguel rafael pablo
    pedro ángel angel sergio fernando jorge luis alberto álvaro alvaro adrián adrian diego raúl raul enrique ramón
    ramon vicente andrés andres joaquín joaquin santiago víctor victor iñigo íñigo inigo gonzalo rubén ruben ignacio
    alfonso marcos mario hugo martín martin lucas mateo leo alejandro
    maría carmen ana isabel dolores pilar teresa rosa josefa cristina lucía lucia marta elena laura francisca
    mercedes raquel rocío rocio nuria paula irene silvia patricia sara beatriz montserrat sofía sofia alba julia
    martina valeria claudia andrea begoña begona inés ines noelia eva esther sonia natalia lorena alicia ainhoa
    jean pierre michel philippe alain nicolas christophe patrick françois francois laurent frédéric frederic
    stéphane stephane david éric eric olivier julien sébastien sebastien thierry pascal daniel christian vincent
    guillaume mathieu matthieu antoine benoît benoit jérôme jerome romain thomas maxime alexandre rémi remi
    théo theo hugo louis gabriel raphaël raphael arthur jules lucas adam nathan baptiste jean-baptiste jean-pierre
    jean-luc jean-marc jean-paul marc yves bernard gérard gerard didier
    marie nathalie isabelle sylvie catherine françoise francoise christine monique valérie valerie sandrine
    véronique veronique sophie céline celine chantal nicole stéphanie stephanie émilie emilie aurélie aurelie
    julie camille léa lea manon chloé chloe inès ines jade louise alice lina emma pauline élodie elodie margaux
    amélie amelie hélène helene claire anne juliette charlotte mathilde clémence clemence océane oceane
    joão joao francisco rodrigo martim santiago tomás tomas afonso duarte miguel gonçalo goncalo pedro diogo
    tiago rui nuno ricardo andré andre bruno paulo jorge luís luis carlos manuel antónio antonio fernando sérgio
    sergio vítor vitor hugo filipe marco lucas gabriel rafael guilherme gustavo matheus felipe leonardo eduardo
    mariana beatriz inês ines leonor matilde carolina sofia ana maria joana rita catarina marta filipa sara
    margarida francisca teresa patrícia patricia cláudia claudia sónia sonia susana raquel vera daniela andreia
    juliana camila larissa fernanda letícia leticia gabriela amanda bruna aline luana júlia julia helena alice
    laura manuela valentina isabela isadora
    """.split()
)

# "Castro Ortega, Diego": the surnames before a comma and a first name.
_INVERTED = regex.compile(
    r"(?<![\p{L}])((?:\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*[ \t]){0,2}\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*),[ \t]+$"
)
_TITLE_TOKEN = regex.compile(r"\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*")
_CAPS_TOKEN = regex.compile(r"\p{Lu}{2,}(?:[-'’]\p{Lu}{2,})*")
_LOWER_TOKEN = regex.compile(r"\p{Ll}{2,}(?:[-'’]\p{Ll}+)*")
_WORD = regex.compile(r"[\p{L}'’-]+")
# Surnames after a lower-case first name stop at these (and at punctuation).
_LOWER_STOP = frozenset(
    """and or from of the at in on to with for but i is was am are my your our
    und oder aus von vom bei mit für ist bin war und ich mein meine
    y o de del con para pero es soy mi la el en
    et ou du avec pour mais est je suis mon ma le la
    e ou do da dos das com para mas é sou meu minha o a em na no""".split()
)
# Self-introductions after which a lower-case name may follow. After a strong one ("my name is")
# whatever follows is the name; after a weak one ("I'm", "soy", "je suis") only a listed first
# name, or exactly two words that are not stop words and end the clause ("I'm tariq mahmood, ...").
_STRONG_INTRO = regex.compile(
    r"(?i)(?<![\p{L}])(?:my name is|my name's|name:|mein name ist|ich heiße|ich heisse|me llamo|mi nombre es|"
    r"je m'appelle|je m’appelle|mon nom est|chamo-me|me chamo|meu nome é|o meu nome é)[ \t]+$"
)
_WEAK_INTRO = regex.compile(
    r"(?i)(?<![\p{L}])(?:i am|i'm|i’m|this is|it's|ich bin|hier (?:ist|schreibt)|soy|je suis|c'est|c’est|"
    r"sou a|sou o|sou|aqui é)[ \t]+$"
)
_VERBISH = regex.compile(r"(?:ing|ly|ed|mente|ment|iert|ierte|ado|ada|ido|ida|ando|endo|indo)$")
_CLAUSE_END = regex.compile(r"[ \t]*(?:[,;:.!?()\n]|$|(?:and|und|y|et|e|from|aus|de|da|do)(?![\p{L}]))")


def _stop_words() -> frozenset[str]:
    from spacy.lang.de.stop_words import STOP_WORDS as DE
    from spacy.lang.en.stop_words import STOP_WORDS as EN
    from spacy.lang.es.stop_words import STOP_WORDS as ES
    from spacy.lang.fr.stop_words import STOP_WORDS as FR
    from spacy.lang.pt.stop_words import STOP_WORDS as PT

    return frozenset(w.lower() for w in (*EN, *DE, *ES, *FR, *PT)) | _LOWER_STOP


_STOP_WORDS = _stop_words()


def _title_case_line(text: str, pos: int) -> bool:
    """A line in Title Case ("Digital Mark Growth Strategy Inquiry") is a heading: its capitals
    say nothing about names. "Titular: Castro Ortega, Diego" has a comma: a form field, not one."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end >= 0 else len(text)]
    words = regex.findall(r"\p{L}+", line)
    return "," not in line and len(words) >= 4 and sum(w[0].isupper() for w in words) >= 0.7 * len(words)


def _is_first_name(word: str) -> bool:
    return word.lower() in _FIRST_NAMES


class FirstNameRecognizer(LocalRecognizer):
    """PERSON spans anchored on a listed first name (see the module docstring)."""

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entities=["PERSON"], supported_language=supported_language, name="FirstNameRecognizer"
        )

    def load(self) -> None:
        pass

    @staticmethod
    def _surnames(text: str, pos: int, token: regex.Pattern[str], max_words: int = 3) -> int:
        """End of up to max_words surname tokens of the given shape from pos (particles allowed
        between them); pos itself when there are none."""
        end = pos
        count = 0
        cursor = pos
        while count < max_words:
            gap = regex.match(r"[ \t]+", text[cursor:])
            if gap is None:
                break
            nxt = cursor + gap.end()
            particle = regex.match(r"(\p{Ll}+)[ \t]+", text[nxt:])
            if particle is not None and particle.group(1) in _PARTICLES:
                nxt += particle.end()
            m = token.match(text, nxt)
            if m is None or m.group() in _NOT_NAMES or m.group().lower() in _LOWER_STOP:
                break
            if m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] in "@_."):
                if not (text[m.end()] == "." and (m.end() + 1 == len(text) or not text[m.end() + 1].isalnum())):
                    break
            end = cursor = m.end()
            count += 1
        return end

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for m in _WORD.finditer(text):
            word = m.group()
            if not _is_first_name(word):
                continue
            if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "@_./"):
                continue
            if m.end() < len(text) and text[m.end()] in "@_":
                continue  # an e-mail local part
            if _TITLE_TOKEN.fullmatch(word) and not _title_case_line(text, m.start()):
                start, end = m.start(), self._surnames(text, m.end(), _TITLE_TOKEN)
                inverted = _INVERTED.search(text[max(0, m.start() - 60) : m.start()])
                if inverted and not any(w in _NOT_NAMES or _is_first_name(w) for w in inverted.group(1).split()):
                    start = m.start() - len(inverted.group(0))
                if (start, end) != (m.start(), m.end()):
                    results.append(_result(self, "PERSON", start, end, 0.7 if end > m.end() else 0.65))
            elif _CAPS_TOKEN.fullmatch(word):
                end = self._surnames(text, m.end(), _CAPS_TOKEN)
                if end > m.end():
                    results.append(_result(self, "PERSON", m.start(), end, 0.65))
                    continue
                inverted = regex.search(r"(\p{Lu}{2,}),[ \t]+$", text[max(0, m.start() - 40) : m.start()])
                if inverted:
                    results.append(_result(self, "PERSON", m.start() - len(inverted.group(0)), m.end(), 0.6))
        results.extend(self._introduced(text))
        return results

    def _introduced(self, text: str) -> list[RecognizerResult]:
        """Lower-case names after a self-introduction."""
        results = []
        for m in regex.finditer(r"(?<![\p{L}\p{N}@_.])\p{Ll}[\p{Ll}'’\-]+", text):
            before = text[max(0, m.start() - 30) : m.start()]
            strong = _STRONG_INTRO.search(before) is not None
            if not strong and _WEAK_INTRO.search(before) is None:
                continue
            if m.group() in _STOP_WORDS and not _is_first_name(m.group()):
                continue
            end = self._surnames(text, m.end(), _LOWER_TOKEN, max_words=2)
            if strong or _is_first_name(m.group()):
                results.append(_result(self, "PERSON", m.start(), end, 0.6))
                continue
            words = text[m.start() : end].split()
            if any(_VERBISH.search(w) for w in words if not _is_first_name(w)):
                continue  # "i am currently utilizing", "I'm seeking ..."
            if (
                len([w for w in words if w not in _PARTICLES]) == 2
                and _CLAUSE_END.match(text, end)
                and not any(w in _STOP_WORDS for w in words[1:] if w not in _PARTICLES)
            ):
                results.append(_result(self, "PERSON", m.start(), end, 0.5))
        return results

//! Whether a free-text field is English: the guard's rules on free text
//! (`marks`, `wording`, `roles`, the number words of `numbers`, the negations
//! and role markers of `tokens`) know English only. A negation such as
//! `nicht`, `sans`, `sem` or `bez`, a number word such as `sieben`, or a
//! role marker such as `vers` is invisible to them, so two requests in another
//! language that differ in one of those words would pass the guard and be
//! served each other's answer. The guard asks [`is_english`] first and, for
//! text in another language, accepts only the same text (see [`same_text`]).
//!
//! The test is a lexicon of function words, chosen from general knowledge of
//! the languages (not from any evaluation set): English's, and those of the
//! languages EOL's users most often write in (German, French, Spanish,
//! Italian, Portuguese, Dutch, Polish), leaving out words that are also
//! English (`die`, `no`, `is`, `in`, `per`, `van`, `met`, `do`, `as`, `to`,
//! `on`, `over`). A text is English unless it holds letters of a non-Latin
//! script (Cyrillic, Greek, CJK, Arabic, ...) or more marks of another
//! language (its function words, and lower-case words with letters English
//! does not use: `ä`, `ß`, `é`, `ñ`, `ł`, ...) than English function words.
//! Names keep their accents without counting (`Inês`, `Café Lumière`).
//! Languages with no mark listed here and a Latin script (Swedish, Turkish,
//! ...) are caught by their letters when they have some; this is the part to
//! extend for another language.

use std::collections::HashMap;
use std::sync::LazyLock;

/// English function words: articles, pronouns, prepositions, auxiliaries,
/// question words, and the verbs requests start with.
#[rustfmt::skip]
const ENGLISH: &[&str] = &[
    "the", "a", "an", "of", "and", "or", "for", "with", "from", "by", "at", "into", "about",
    "after", "before", "between", "this", "that", "these", "those", "which", "what", "who",
    "whom", "whose", "why", "how", "when", "where", "my", "your", "our", "their", "his", "her",
    "its", "me", "you", "we", "they", "it", "us", "them", "are", "was", "were", "be", "been",
    "has", "have", "had", "does", "did", "not", "can", "could", "will", "would", "should", "must",
    "any", "every", "each", "some", "all", "there", "here", "please", "than", "then", "if", "yet",
    "still", "just", "also", "only", "up", "out", "off", "last", "next", "new", "many", "much",
    "more", "most", "same", "other", "show", "list", "give", "tell", "send", "make", "add", "get",
    "find", "set", "let", "draft", "write", "check", "i", "is", "to", "in", "on", "do", "no",
    "until", "since", "without", "yesterday", "today", "tomorrow", "week", "month", "day", "don",
    "doesn", "isn", "aren", "didn", "hasn", "haven", "wasn", "weren", "won", "shouldn", "couldn",
    "wouldn",
];

/// Function words of German, French, Spanish, Italian, Portuguese, Dutch and
/// Polish that are not English words.
#[rustfmt::skip]
const OTHER: &[&str] = &[
    // German
    "der", "das", "und", "ist", "nicht", "mit", "für", "von", "zu", "dem", "den", "des", "ein",
    "eine", "einen", "einem", "einer", "ich", "mein", "meine", "meinen", "meiner", "wie", "auf",
    "bitte", "zeig", "zeige", "sind", "wurde", "wurden", "werden", "noch", "auch", "oder", "aber",
    "bei", "nach", "aus", "über", "vom", "zum", "zur", "kein", "keine", "keinen", "ohne", "alle",
    "diese", "dieser", "dieses", "heute", "gestern", "morgen", "mir", "uns", "welche", "welcher",
    "welches", "warum", "wann", "wo", "sie", "wir", "haben", "kann", "können", "soll", "bis",
    "seit", "schon", "nur", "viele", "letzten", "nächsten", "wird", "mich", "ihr", "ihre",
    "ihren", "im", "vor", "sich", "einmal", "wieder",
    // French (and `de`, `la`: also Spanish, Portuguese, Italian, Dutch)
    "de", "la", "le", "les", "des", "du", "et", "est", "pas", "pour", "avec", "une", "dans",
    "que", "qui", "mon", "ma", "mes", "ce", "cette", "ces", "sur", "au", "aux", "sont", "été",
    "ne", "sans", "je", "nous", "vous", "il", "elle", "ils", "elles", "leur", "leurs", "quel",
    "quelle", "quels", "quelles", "combien", "où", "moi", "hier", "demain", "depuis", "très",
    "mais", "ou", "aussi", "tous", "toutes", "derniers", "dernières", "jamais", "lui", "notre",
    "nos", "votre", "vos", "entre", "chez",
    // Spanish
    "el", "los", "las", "del", "y", "es", "para", "con", "una", "uno", "mi", "mis", "por", "su",
    "sus", "al", "lo", "como", "cuántos", "cuántas", "cuánto", "cuál", "cuáles", "dónde",
    "cuándo", "está", "están", "sin", "pero", "también", "todos", "todas", "ayer", "mañana",
    "hoy", "desde", "hasta", "este", "esta", "estos", "estas", "últimos", "últimas", "nunca",
    "muéstrame", "dime", "nuestro", "nuestra", "qué", "quién", "ha", "han", "fue", "ya",
    // Italian
    "il", "gli", "della", "delle", "dei", "degli", "di", "è", "non", "che", "mio", "mia", "miei",
    "mie", "sono", "nel", "nella", "nei", "sul", "sulla", "alla", "alle", "dal", "dalla",
    "quanti", "quante", "quanto", "dove", "quando", "senza", "ma", "anche", "tutti", "tutte",
    "ieri", "domani", "oggi", "questo", "questa", "questi", "ultimi", "ultime", "mai", "hanno",
    "fammi", "dimmi", "nostro", "nostra", "ancora", "già", "perché",
    // Portuguese
    "o", "os", "da", "não", "com", "um", "meu", "minha", "meus", "minhas", "na", "nos", "em",
    "pelo", "pela", "quantos", "quantas", "onde", "sem", "mas", "também", "ontem", "amanhã",
    "hoje", "dos", "das", "ao", "aos", "à", "às", "ainda", "já", "foi", "foram", "seu", "sua",
    "mostra", "mostre", "você", "nosso", "nossa", "é", "são", "está", "estão", "até",
    // Dutch
    "het", "een", "en", "niet", "voor", "mijn", "wat", "zijn", "naar", "ook", "maar", "bij",
    "uit", "geen", "zonder", "alle", "deze", "dit", "hoeveel", "waar", "wanneer", "welke",
    "gisteren", "vandaag", "nog", "er", "te", "je", "jij", "wij", "hebben", "heeft", "wordt",
    "worden", "laatste", "ons", "onze", "jouw", "uw", "geef", "toon", "alstublieft", "graag",
    "moet", "kan", "kunnen", "wil", "welk", "nooit", "tot", "sinds", "afgelopen",
    // Polish
    "nie", "jest", "w", "z", "na", "się", "mój", "moja", "moje", "jak", "ile", "gdzie", "kiedy",
    "bez", "dla", "od", "przez", "oraz", "czy", "wszystkie", "wczoraj", "jutro", "dzisiaj",
    "ostatnich", "mnie", "pokaż", "mojego", "mojej", "są", "był", "była", "było", "jeszcze",
    "już", "tylko", "po", "ze", "nasz", "nasza", "proszę",
];

/// Which language a function word marks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    English,
    Other,
}

/// [`ENGLISH`] and [`OTHER`] as one map, built once: a guard call looks up
/// every word of both texts.
static LEXICON: LazyLock<HashMap<&'static str, Mark>> = LazyLock::new(|| {
    let mut words: HashMap<&'static str, Mark> = OTHER.iter().map(|w| (*w, Mark::Other)).collect();
    words.extend(ENGLISH.iter().map(|w| (*w, Mark::English)));
    words
});

/// Whether `text` reads as English (see the module's docs): true unless it
/// has letters of a non-Latin script, or more marks of another language
/// than English function words.
pub(super) fn is_english(text: &str) -> bool {
    if text.chars().any(|c| c.is_alphabetic() && !latin(c)) {
        return false;
    }
    let (mut english, mut other) = (0usize, 0usize);
    let mut lower = String::new();
    for word in words(text) {
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase));
        let mark = LEXICON.get(lower.as_str()).copied();
        // A word capitalised in the text is a name or the start of a
        // sentence: it counts only as a function word (`Wie`, `Le`, `El`
        // start many requests), never by its letters.
        let capitalised = word.chars().next().is_some_and(char::is_uppercase);
        match mark {
            Some(Mark::English) => english += 1,
            Some(Mark::Other) => other += 1,
            None if !capitalised && word.chars().any(foreign_letter) => other += 1,
            None => {}
        }
    }
    english >= other
}

/// Whether two texts are the same request for certain without reading them:
/// equal once case, spacing and the closing punctuation are set aside (the
/// only comparison the guard makes of text in another language).
pub(super) fn same_text(a: &str, b: &str) -> bool {
    normalized(a) == normalized(b)
}

fn normalized(text: &str) -> String {
    let text = text
        .trim()
        .trim_end_matches(['.', '!', '?', '。', '？', '！', ' ']);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The words of `text`, leaving out URLs, e-mail addresses, domains and
/// codes (`eol.to/x7Kp`, `KB-104`), whose parts say nothing of the
/// language; elisions and contractions are split at the apostrophe
/// (`l'ordine`, `don't`).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter(|t| {
            !t.contains(['/', '@', '.'])
                || t.trim_end_matches(['.', ',', '!', '?', ':', ';'])
                    .chars()
                    .all(|c| c.is_alphabetic() || c == '\'')
        })
        .filter(|t| !t.chars().any(|c| c.is_ascii_digit()))
        .flat_map(|t| t.split(|c: char| !c.is_alphabetic()))
        .filter(|w| !w.is_empty())
}

/// Letters of the Latin script (ASCII, Latin-1, Latin Extended).
fn latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || ('\u{00C0}'..='\u{024F}').contains(&c)
        || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

/// A Latin letter English words do not use (outside loanwords such as
/// `café`, which count once and lose to any English function word).
fn foreign_letter(c: char) -> bool {
    ('\u{00C0}'..='\u{024F}').contains(&c) || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::super::guard::testing::{same, why};
    use super::*;

    #[test]
    fn english_requests_are_english() {
        for text in [
            "Reserve 40 units of KB-104 for order 58213.",
            "List Lukas Meyer's posts that are still in draft.",
            "Refund INV-2031.",
            "Reset 2FA for Kenji.",
            "Enable dunning emails for Café Lumière starting next week.",
            "Translate the preview text for eol.to/expo-lisboa into Portuguese.",
            "Inês Carvalho leads the Lisbon team.",
        ] {
            assert!(is_english(text), "{text}");
        }
    }

    #[test]
    fn other_languages_are_not_english() {
        for text in [
            "Versende die Bestellung 4821 ohne den Zahlungslink.",
            "Envoie la commande 4821 avec le lien de paiement.",
            "¿Cuántas unidades de KB-104 quedan en el almacén?",
            "Spedisci l'ordine 4821 con il link di pagamento.",
            "Verstuur bestelling 4821 met de betaallink.",
            "Wyślij zamówienie 4821 z linkiem do płatności.",
            "注文4821を支払いリンク付きで発送してください。",
            "Отправь заказ 4821 со ссылкой на оплату.",
        ] {
            assert!(!is_english(text), "{text}");
        }
    }

    #[test]
    fn same_text_sets_aside_case_spacing_and_the_closing_mark() {
        assert!(same_text("Wie viele Einheiten?", "wie  viele einheiten"));
        assert!(!same_text("Versende mit Link", "Versende ohne Link"));
    }

    #[test]
    fn the_guard_accepts_text_in_another_language_only_as_the_same_text() {
        // A German negation the English rules cannot see.
        assert_eq!(
            why(
                "Versende die Bestellung 4821 mit dem Zahlungslink.",
                "Versende die Bestellung 4821 ohne den Zahlungslink."
            )
            .as_deref(),
            Some("not")
        );
        // A French paraphrase: refused too (the rules cannot tell it is one).
        assert!(
            why(
                "Annule la facture INV-2031 pour Kowalski.",
                "Pour Kowalski, annule la facture INV-2031."
            )
            .is_some()
        );
        // An English request against its translation.
        assert!(
            why(
                "Cancel invoice INV-2031 for Kowalski.",
                "Annule la facture INV-2031 pour Kowalski."
            )
            .is_some()
        );
        same(
            "Annule la facture INV-2031 pour Kowalski.",
            "annule la facture INV-2031 pour Kowalski",
        );
        // English keeps its rules.
        same(
            "Cancel invoice INV-2031 for Kowalski.",
            "Please cancel Kowalski's invoice INV-2031.",
        );
    }
}

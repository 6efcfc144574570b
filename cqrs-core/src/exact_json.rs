//! Comparing two JSON texts by value, exactly.
//!
//! A store may reformat what it was given (PostgreSQL's `jsonb` drops
//! whitespace, sorts keys, keeps the last of duplicate keys, writes `1e16` as
//! `10000000000000000` and decodes `\u00e9` escapes), so an idempotent
//! re-append cannot compare texts. Comparing through `f64` is not exact
//! either: 2^70+1 and 2^70+12345 are the same `f64`. Numbers here are
//! compared as decimals, digit by digit.

/// A JSON value reduced to a form in which equal values are equal.
#[derive(Debug, PartialEq)]
enum Canonical {
    Null,
    Bool(bool),
    Number(Decimal),
    Text(String),
    Array(Vec<Canonical>),
    /// Sorted by key; of duplicate keys the last one, as `jsonb` keeps.
    Object(Vec<(String, Canonical)>),
}

/// `(-1)^negative * 0.digits * 10^exponent`, without leading or trailing
/// zero digits; zero has no digits and is never negative.
#[derive(Debug, PartialEq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

/// Deeper than any payload a store accepts; past it the texts count as
/// different rather than risking the stack.
const DEPTH_LIMIT: usize = 512;

/// Whether two valid JSON texts hold the same value.
pub(crate) fn equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn parse(text: &str) -> Option<Canonical> {
    let mut parser = Parser {
        text: text.as_bytes(),
        source: text,
        at: 0,
    };
    let value = parser.value(0)?;
    parser.skip_space();
    (parser.at == parser.text.len()).then_some(value)
}

struct Parser<'a> {
    text: &'a [u8],
    source: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|byte| byte.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str, value: Canonical) -> Option<Canonical> {
        let end = self.at + word.len();
        (self.text.get(self.at..end) == Some(word.as_bytes())).then(|| {
            self.at = end;
            value
        })
    }

    fn value(&mut self, depth: usize) -> Option<Canonical> {
        if depth > DEPTH_LIMIT {
            return None;
        }
        self.skip_space();
        match *self.text.get(self.at)? {
            b'n' => self.literal("null", Canonical::Null),
            b't' => self.literal("true", Canonical::Bool(true)),
            b'f' => self.literal("false", Canonical::Bool(false)),
            b'"' => self.string().map(Canonical::Text),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.eat(b',').then_some(())?;
                    }
                }
                Some(Canonical::Array(items))
            }
            b'{' => {
                self.at += 1;
                let mut fields: Vec<(String, Canonical)> = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_space();
                        let key = self.string()?;
                        self.eat(b':').then_some(())?;
                        let value = self.value(depth + 1)?;
                        fields.retain(|(existing, _)| *existing != key);
                        fields.push((key, value));
                        if self.eat(b'}') {
                            break;
                        }
                        self.eat(b',').then_some(())?;
                    }
                }
                fields.sort_by(|(a, _), (b, _)| a.cmp(b));
                Some(Canonical::Object(fields))
            }
            _ => self.number().map(Canonical::Number),
        }
    }

    /// A string token, unescaped by serde_json.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        if self.text.get(start) != Some(&b'"') {
            return None;
        }
        let mut at = start + 1;
        loop {
            match *self.text.get(at)? {
                b'\\' => at += 2,
                b'"' => break,
                _ => at += 1,
            }
        }
        self.at = at + 1;
        serde_json::from_str(self.source.get(start..=at)?).ok()
    }

    fn number(&mut self) -> Option<Decimal> {
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|byte| matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.at += 1;
        }
        decimal(self.source.get(start..self.at)?)
    }
}

fn decimal(token: &str) -> Option<Decimal> {
    let (negative, unsigned) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let leading = digits.iter().take_while(|&&digit| digit == b'0').count();
    digits.drain(..leading);
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return Some(Decimal {
            negative: false,
            digits,
            exponent: 0,
        });
    }
    // 0.digits * 10^exponent: the point sits after the whole part's
    // significant digits.
    let whole_len = i64::try_from(whole.len()).ok()?;
    let leading = i64::try_from(leading).ok()?;
    Some(Decimal {
        negative,
        digits,
        exponent: exponent.checked_add(whole_len)?.checked_sub(leading)?,
    })
}

#[cfg(test)]
mod tests {
    use super::equal;

    #[test]
    fn numbers_compare_exactly_whatever_their_notation() {
        assert!(equal("1e16", "10000000000000000"));
        assert!(equal("[0.5, -0.0, 120]", "[5e-1,0,1.2E2]"));
        assert!(equal("0.001", "1e-3"));
        assert!(!equal("1180591620717411303425", "1180591620717411315713"));
        assert!(!equal("1", "-1"));
        assert!(!equal("0.1", "1"));
    }

    #[test]
    fn objects_compare_as_jsonb_stores_them() {
        assert!(equal(r#"{"b": 1, "a": "\u00e9"}"#, r#"{"a":"é","b":1}"#));
        assert!(equal(r#"{"a":1,"a":2}"#, r#"{"a":2}"#));
        assert!(!equal(r#"{"a":1}"#, r#"{"a":1,"b":null}"#));
        assert!(!equal(r#"["a","b"]"#, r#"["b","a"]"#));
        assert!(!equal(r#""x""#, "null"));
    }
}

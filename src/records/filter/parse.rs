//! Lexer and recursive-descent parser for PocketBase's filter language.
//!
//! Grammar (`&&` binds tighter than `||`, as in PocketBase's SQL output):
//! ```text
//! or      := and ( "||" and )*
//! and     := primary ( "&&" primary )*
//! primary := "(" or ")" | operand op operand
//! op      := "=" | "!=" | ">" | ">=" | "<" | "<=" | "~" | "!~"   (each also with a "?" prefix)
//! operand := 'text' | "text" | number | identifier      (true, false, null are identifiers)
//! ```
//! `//` starts a comment that runs to the end of the line. Input never becomes code: the
//! result is an AST, with limits on size, nesting and the number of comparisons.

use super::{Expr, FilterError, Op, Operand};

/// Longest accepted expression, in bytes.
pub const MAX_LENGTH: usize = 8192;
/// Deepest accepted parenthesis nesting.
pub const MAX_DEPTH: usize = 32;
/// Most comparisons in one expression.
pub const MAX_COMPARISONS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    And,
    Or,
    Op(Op, bool),
    Text(String),
    Number(f64),
    Ident(String),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn err(position: usize, message: impl Into<String>) -> FilterError {
    FilterError { position, message: message.into() }
}

impl<'a> Lexer<'a> {
    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if self.rest().starts_with("//") {
                match self.rest().find('\n') {
                    Some(n) => self.pos += n + 1,
                    None => self.pos = self.src.len(),
                }
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Result<Option<(usize, Token)>, FilterError> {
        self.skip_space_and_comments();
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(None);
        };
        let rest = self.rest();
        let token = match c {
            '(' => {
                self.pos += 1;
                Token::LParen
            }
            ')' => {
                self.pos += 1;
                Token::RParen
            }
            '&' if rest.starts_with("&&") => {
                self.pos += 2;
                Token::And
            }
            '|' if rest.starts_with("||") => {
                self.pos += 2;
                Token::Or
            }
            '\'' | '"' => Token::Text(self.text(c)?),
            '?' | '=' | '!' | '>' | '<' | '~' => {
                let any = c == '?';
                let body = if any { &rest[1..] } else { rest };
                let (op, len) = if body.starts_with("!=") {
                    (Op::Neq, 2)
                } else if body.starts_with("!~") {
                    (Op::NotLike, 2)
                } else if body.starts_with(">=") {
                    (Op::Gte, 2)
                } else if body.starts_with("<=") {
                    (Op::Lte, 2)
                } else if body.starts_with('=') {
                    (Op::Eq, 1)
                } else if body.starts_with('>') {
                    (Op::Gt, 1)
                } else if body.starts_with('<') {
                    (Op::Lt, 1)
                } else if body.starts_with('~') {
                    (Op::Like, 1)
                } else {
                    return Err(err(start, format!("unknown operator starting with {c:?}")));
                };
                self.pos += len + usize::from(any);
                Token::Op(op, any)
            }
            c if c.is_ascii_digit() || (c == '-' || c == '+' || c == '.') => {
                let len = rest
                    .char_indices()
                    .skip(1)
                    .find(|(_, ch)| !(ch.is_ascii_digit() || *ch == '.' || *ch == 'e' || *ch == 'E'))
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len());
                let literal = &rest[..len];
                let n: f64 =
                    literal.parse().map_err(|_| err(start, format!("invalid number {literal:?}")))?;
                if !n.is_finite() {
                    return Err(err(start, format!("invalid number {literal:?}")));
                }
                self.pos += len;
                Token::Number(n)
            }
            c if c.is_alphanumeric() || c == '_' || c == '@' => {
                let len = rest
                    .char_indices()
                    .find(|(_, ch)| !(ch.is_alphanumeric() || matches!(ch, '_' | '@' | '.' | ':')))
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len());
                self.pos += len;
                Token::Ident(rest[..len].to_string())
            }
            other => return Err(err(start, format!("unexpected character {other:?}"))),
        };
        Ok(Some((start, token)))
    }

    /// A quoted string; `\` escapes the next character.
    fn text(&mut self, quote: char) -> Result<String, FilterError> {
        let start = self.pos;
        self.pos += quote.len_utf8();
        let mut out = String::new();
        let mut escaped = false;
        for (i, ch) in self.src[self.pos..].char_indices() {
            if escaped {
                out.push(ch);
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == quote {
                self.pos += i + ch.len_utf8();
                return Ok(out);
            } else {
                out.push(ch);
            }
        }
        Err(err(start, "unterminated text literal"))
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    index: usize,
    comparisons: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.index).map(|(p, _)| *p).unwrap_or(self.end)
    }

    fn bump(&mut self) -> Option<(usize, Token)> {
        let t = self.tokens.get(self.index).cloned();
        self.index += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.bump();
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.primary(depth)?;
        while self.peek() == Some(&Token::And) {
            self.bump();
            let right = self.primary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Token::LParen) {
            let open = self.position();
            if depth >= MAX_DEPTH {
                return Err(err(open, format!("nesting deeper than {MAX_DEPTH} levels")));
            }
            self.bump();
            let inner = self.or(depth + 1)?;
            match self.bump() {
                Some((_, Token::RParen)) => Ok(inner),
                Some((p, _)) => Err(err(p, "expected )")),
                None => Err(err(open, "unclosed (")),
            }
        } else {
            self.comparison()
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let position = self.position();
        match self.bump() {
            Some((_, Token::Text(s))) => Ok(Operand::Text(s)),
            Some((_, Token::Number(n))) => Ok(Operand::Number(n)),
            Some((p, Token::Ident(name))) => Operand::identifier(&name).map_err(|m| err(p, m)),
            Some((p, other)) => Err(err(p, format!("expected a value or field, found {}", describe(&other)))),
            None => Err(err(position, "expected a value or field, found the end")),
        }
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let position = self.position();
        let left = self.operand()?;
        let (op, any) = match self.bump() {
            Some((_, Token::Op(op, any))) => (op, any),
            Some((p, other)) => {
                return Err(err(p, format!("expected an operator, found {}", describe(&other))))
            }
            None => return Err(err(self.end, "expected an operator, found the end")),
        };
        let right = self.operand()?;
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(err(position, format!("more than {MAX_COMPARISONS} comparisons")));
        }
        Ok(Expr::Compare { left, op, any, right, position })
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
        Token::And => "&&".into(),
        Token::Or => "||".into(),
        Token::Op(_, _) => "an operator".into(),
        Token::Text(_) => "a text".into(),
        Token::Number(_) => "a number".into(),
        Token::Ident(name) => format!("{name:?}"),
    }
}

/// Parses a filter or rule expression.
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    if src.len() > MAX_LENGTH {
        return Err(err(MAX_LENGTH, format!("longer than {MAX_LENGTH} bytes")));
    }
    let mut lexer = Lexer { src, pos: 0 };
    let mut tokens = Vec::new();
    while let Some(t) = lexer.next()? {
        tokens.push(t);
    }
    if tokens.is_empty() {
        return Err(err(0, "empty expression"));
    }
    let mut parser = Parser { tokens, index: 0, comparisons: 0, end: src.len() };
    let expr = parser.or(0)?;
    if let Some((p, t)) = parser.bump() {
        return Err(err(p, format!("unexpected {} after a complete expression", describe(&t))));
    }
    Ok(expr)
}

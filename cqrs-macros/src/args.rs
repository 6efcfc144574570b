//! Parsing `key = value, key(...), ...` argument lists, reporting every bad
//! key instead of stopping at the first.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitStr, Token, Type};

use crate::errors::Errors;

/// Parses `tokens` as a comma-separated list of entries that each start with
/// a key. `entry` parses what follows the key; when it fails, the error is
/// recorded and parsing resumes after the next comma.
pub(crate) fn parse_list(
    tokens: TokenStream,
    errors: &mut Errors,
    mut entry: impl FnMut(&Ident, ParseStream<'_>) -> syn::Result<()>,
) {
    let mut found = Errors::default();
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        while !input.is_empty() {
            let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
            if let Err(error) = entry(&key, input) {
                found.push(error);
                skip_entry(input)?;
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
    if let Err(error) = found.finish() {
        errors.push(error);
    }
}

/// Parses an attribute's arguments with [`parse_list`].
pub(crate) fn parse_attr(
    attr: &syn::Attribute,
    errors: &mut Errors,
    entry: impl FnMut(&Ident, ParseStream<'_>) -> syn::Result<()>,
) {
    match &attr.meta {
        syn::Meta::List(list) => parse_list(list.tokens.clone(), errors, entry),
        other => errors.at(other, "expected arguments in parentheses"),
    }
}

/// Skips the rest of an entry, up to (not including) the next top-level comma.
fn skip_entry(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                return Ok(((), rest));
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

/// The arguments of `#[projector]` and `#[document]`: `event = Type` and an
/// optional `name = "..."`.
#[derive(Default)]
pub(crate) struct EventAndName {
    pub(crate) event: Option<Type>,
    pub(crate) name: Option<LitStr>,
}

impl EventAndName {
    /// Parses the arguments of the attribute `macro_name`.
    pub(crate) fn parse(tokens: TokenStream, macro_name: &str, errors: &mut Errors) -> Self {
        let mut args = Self::default();
        parse_list(tokens, errors, |key, input| {
            let taken = match key.to_string().as_str() {
                "event" => args.event.is_some(),
                "name" => args.name.is_some(),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown `{macro_name}` argument `{key}`: expected `event` or `name`"
                        ),
                    ));
                }
            };
            if taken {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key}` is given twice"),
                ));
            }
            input.parse::<Token![=]>()?;
            if key == "event" {
                args.event = Some(input.parse()?);
            } else {
                args.name = Some(input.parse()?);
            }
            Ok(())
        });
        args
    }
}

//! A borrowed view of an enum's variants, shared by the `DomainEvent` and
//! `Command` derives, with their `#[event(...)]` / `#[command(...)]` attributes.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Attribute, DeriveInput, Ident, LitInt, LitStr, Token, Type};

use crate::args;
use crate::errors::Errors;

/// What a variant holds.
pub(crate) enum Shape<'a> {
    /// `Name`
    Unit,
    /// `Name(Type)`: the shape dispatch and `From` work with.
    Newtype(&'a Type),
    /// `Name(A, B)` or `Name { .. }`.
    Fields,
}

/// One variant, with what its attribute says.
pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) shape: Shape<'a>,
    /// The stored / reported name: the attribute's `name`, else the variant name.
    pub(crate) name: String,
    /// Where the name came from, for error spans.
    pub(crate) name_span: Span,
    /// The attribute's `version`, when given.
    pub(crate) version: Option<u32>,
    /// The attribute's `upcast = path`: the function that turns payloads of
    /// older schema versions into the current shape.
    pub(crate) upcast: Option<syn::Path>,
    /// The attribute's `creates` flag: the command starts a new aggregate.
    pub(crate) creates: bool,
}

/// The keys one derive accepts in its variant attribute.
pub(crate) struct AttrSpec {
    /// The attribute's name: `event` or `command`.
    pub(crate) attr: &'static str,
    /// Whether `version = N` is accepted.
    pub(crate) version: bool,
    /// Whether the flag `creates` is accepted.
    pub(crate) creates: bool,
    /// What the derive is called, for messages.
    pub(crate) derive: &'static str,
}

/// The variants of an enum, or errors for everything wrong with them.
pub(crate) fn parse<'a>(
    input: &'a DeriveInput,
    spec: &AttrSpec,
    errors: &mut Errors,
) -> Option<Vec<Variant<'a>>> {
    let data = match &input.data {
        syn::Data::Enum(data) => data,
        syn::Data::Struct(data) => {
            errors.at(
                data.struct_token,
                format!(
                    "`{}` can only be derived for enums: make `{}` an enum with one variant per kind of {}",
                    spec.derive, input.ident, spec.attr
                ),
            );
            return None;
        }
        syn::Data::Union(data) => {
            errors.at(
                data.union_token,
                format!("`{}` can only be derived for enums", spec.derive),
            );
            return None;
        }
    };
    if data.variants.is_empty() {
        errors.at(
            &input.ident,
            format!("`{}` needs at least one variant", spec.derive),
        );
        return None;
    }
    for attr in input.attrs.iter().filter(|a| a.path().is_ident(spec.attr)) {
        errors.at(
            attr,
            format!(
                "`#[{}(...)]` belongs on the variants, not on the enum",
                spec.attr
            ),
        );
    }

    let mut variants = Vec::with_capacity(data.variants.len());
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    for variant in &data.variants {
        let shape = match &variant.fields {
            syn::Fields::Unit => Shape::Unit,
            syn::Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                Shape::Newtype(&fields.unnamed[0].ty)
            }
            _ => Shape::Fields,
        };
        let mut parsed = Variant {
            ident: &variant.ident,
            shape,
            name: variant.ident.to_string(),
            name_span: variant.ident.span(),
            version: None,
            upcast: None,
            creates: false,
        };
        for attr in variant
            .attrs
            .iter()
            .filter(|a| a.path().is_ident(spec.attr))
        {
            parse_variant_attr(attr, spec, &mut parsed, errors);
        }
        if let Some(first) = seen.get(&parsed.name) {
            errors.push(syn::Error::new(
                parsed.name_span,
                format!(
                    "duplicate {} name `{}`: variant `{first}` already uses it; give one of them `#[{}(name = \"...\")]`",
                    spec.attr, parsed.name, spec.attr
                ),
            ));
        } else {
            seen.insert(parsed.name.clone(), &variant.ident);
        }
        variants.push(parsed);
    }
    Some(variants)
}

fn parse_variant_attr(
    attr: &Attribute,
    spec: &AttrSpec,
    variant: &mut Variant<'_>,
    errors: &mut Errors,
) {
    let mut problems = Errors::default();
    args::parse_attr(attr, errors, |key, input| {
        match key.to_string().as_str() {
            "name" => {
                input.parse::<Token![=]>()?;
                let name: LitStr = input.parse()?;
                if name.value().trim().is_empty() {
                    problems.at(&name, format!("the {} name cannot be empty", spec.attr));
                }
                variant.name = name.value();
                variant.name_span = name.span();
            }
            "creates" if spec.creates => {
                variant.creates = true;
            }
            "upcast" if spec.version => {
                input.parse::<Token![=]>()?;
                variant.upcast = Some(input.parse()?);
            }
            "version" if spec.version => {
                input.parse::<Token![=]>()?;
                let version: LitInt = input.parse()?;
                match version.base10_parse::<u32>() {
                    Ok(0) | Err(_) => problems.at(
                        &version,
                        "the schema version is a whole number from 1 (the first version) up",
                    ),
                    Ok(n) => variant.version = Some(n),
                }
            }
            _ => {
                let expected = match (spec.version, spec.creates) {
                    (true, _) => "`name`, `version` or `upcast`",
                    (false, true) => "`name` or `creates`",
                    (false, false) => "`name`",
                };
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown `{}` attribute key `{key}`: expected {expected}",
                        spec.attr
                    ),
                ));
            }
        }
        Ok(())
    });
    if let Err(error) = problems.finish() {
        errors.push(error);
    }
}

/// The newtype variants whose type no other newtype variant holds: those
/// get `From` impls and take part in dispatch (two variants of one type
/// would make both ambiguous).
pub(crate) fn unique_newtypes<'v, 'a>(
    variants: &'v [Variant<'a>],
) -> Vec<(&'v Variant<'a>, &'a Type)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for variant in variants {
        if let Shape::Newtype(ty) = variant.shape {
            *counts.entry(ty.to_token_stream().to_string()).or_default() += 1;
        }
    }
    variants
        .iter()
        .filter_map(|variant| match variant.shape {
            Shape::Newtype(ty) if counts[&ty.to_token_stream().to_string()] == 1 => {
                Some((variant, ty))
            }
            _ => None,
        })
        .collect()
}

/// Whether every variant is a newtype of a type no other variant holds, so the
/// enum can dispatch by type.
pub(crate) fn dispatchable(variants: &[Variant<'_>]) -> bool {
    unique_newtypes(variants).len() == variants.len()
}

/// `impl From<T> for Enum` for each unique newtype variant.
pub(crate) fn from_impls(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let impls = unique_newtypes(variants).into_iter().map(|(variant, ty)| {
        let ident = variant.ident;
        quote! {
            #[automatically_derived]
            impl #impl_generics ::core::convert::From<#ty> for #name #ty_generics #where_clause {
                fn from(value: #ty) -> Self {
                    Self::#ident(value)
                }
            }
        }
    });
    quote! { #(#impls)* }
}

/// `Self::Variant { .. }`: matches a variant of any shape.
pub(crate) fn any_pattern(variant: &Variant<'_>) -> TokenStream {
    let ident = variant.ident;
    quote! { Self::#ident { .. } }
}

//! `#[derive(DomainEvent)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;
use syn::punctuated::Punctuated;

use crate::errors::{Errors, with_fallback};
use crate::variants::{self, AttrSpec, Variant};

const SPEC: AttrSpec = AttrSpec {
    attr: "event",
    version: true,
    creates: false,
    derive: "DomainEvent",
};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    check_serde_representation(input, &mut errors);
    let variants = variants::parse(input, &SPEC, &mut errors);
    match (errors.finish(), variants) {
        (Ok(()), Some(variants)) => generate(input, &variants),
        (Err(error), _) => with_fallback(error, fallback(input)),
        (Ok(()), None) => fallback(input),
    }
}

/// The payload codec relies on serde's default, externally tagged enum
/// representation and on every variant taking part in it.
fn check_serde_representation(input: &DeriveInput, errors: &mut Errors) {
    let serde_metas = |attrs: &[syn::Attribute]| -> Vec<syn::Meta> {
        attrs
            .iter()
            .filter(|attr| attr.path().is_ident("serde"))
            .filter_map(|attr| {
                attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
                    .ok()
            })
            .flatten()
            .collect()
    };
    for meta in serde_metas(&input.attrs) {
        if ["tag", "content", "untagged"]
            .iter()
            .any(|key| meta.path().is_ident(key))
        {
            errors.at(
                &meta,
                "event enums must use serde's default enum representation: the stored event type already names the variant, and the payload holds only its content; remove this serde attribute",
            );
        }
    }
    if let syn::Data::Enum(data) = &input.data {
        for variant in &data.variants {
            for meta in serde_metas(&variant.attrs) {
                let banned = [
                    "skip",
                    "skip_serializing",
                    "skip_deserializing",
                    "other",
                    "untagged",
                ];
                if banned.iter().any(|key| meta.path().is_ident(key)) {
                    errors.at(
                        &meta,
                        "every event variant must serialize and deserialize: remove this serde attribute, or remove the variant",
                    );
                }
            }
        }
    }
}

fn generate(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    let patterns: Vec<TokenStream> = variants.iter().map(variants::any_pattern).collect();
    let versions: Vec<u32> = variants.iter().map(|v| v.version.unwrap_or(1)).collect();
    let indexes = 0..variants.len() as u32;

    let upcasts = variants.iter().enumerate().filter_map(|(index, variant)| {
        let upcast = variant.upcast.as_ref()?;
        let index = index as u32;
        Some(quote! {
            #index if event_version < current_version => {
                let value: ::cqrskit::__private::serde_json::Value =
                    ::cqrskit::__private::serde_json::from_str(payload)?;
                let value = #upcast(event_version, value).map_err(|reason| {
                    ::cqrskit::PayloadError::Upcast {
                        event_version,
                        reason: ::std::string::ToString::to_string(&reason).into_boxed_str(),
                    }
                })?;
                let upcast = ::cqrskit::__private::serde_json::value::to_raw_value(&value)?;
                return ::core::result::Result::Ok(::cqrskit::codec::decode_variant(index, upcast.get())?);
            }
        })
    });
    let from_impls = variants::from_impls(input, variants);
    let variant_impls = event_variant_impls(input, variants);
    let dispatch = dispatch_impl(input, variants);

    quote! {
        #[automatically_derived]
        impl #impl_generics ::cqrskit::DomainEvent for #name #ty_generics #where_clause {
            const EVENT_TYPES: &'static [&'static str] = &[#(#names),*];

            fn event_type(&self) -> &'static str {
                match self {
                    #(#patterns => #names,)*
                }
            }

            fn event_version(&self) -> u32 {
                match self {
                    #(#patterns => #versions,)*
                }
            }

            fn decode(
                event_type: &str,
                event_version: u32,
                payload: &str,
            ) -> ::core::result::Result<Self, ::cqrskit::PayloadError> {
                let (index, current_version): (u32, u32) = match event_type {
                    #(#names => (#indexes, #versions),)*
                    _ => {
                        return ::core::result::Result::Err(::cqrskit::PayloadError::UnknownEventType {
                            event_type: ::std::string::String::from(event_type),
                        });
                    }
                };
                if event_version > current_version {
                    return ::core::result::Result::Err(::cqrskit::PayloadError::UnsupportedVersion {
                        event_type: ::std::string::String::from(event_type),
                        event_version,
                    });
                }
                #[allow(clippy::match_single_binding)]
                match index {
                    #(#upcasts)*
                    _ => {}
                }
                ::core::result::Result::Ok(::cqrskit::codec::decode_variant(index, payload)?)
            }
        }

        #from_impls
        #variant_impls
        #dispatch
    }
}

/// `EventVariant<T>` for each unique newtype variant: how projectors and
/// aggregates find "their" variant by type.
fn event_variant_impls(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let impls = variants::unique_newtypes(variants).into_iter().map(|(variant, ty)| {
        let ident = variant.ident;
        let stored = &variant.name;
        quote! {
            #[automatically_derived]
            impl #impl_generics ::cqrskit::dispatch::EventVariant<#ty> for #name #ty_generics #where_clause {
                const EVENT_TYPE: &'static str = #stored;

                fn as_variant(&self) -> ::core::option::Option<&#ty> {
                    match self {
                        Self::#ident(event) => ::core::option::Option::Some(event),
                        #[allow(unreachable_patterns)]
                        _ => ::core::option::Option::None,
                    }
                }
            }
        }
    });
    quote! { #(#impls)* }
}

/// `DispatchEvent<A>` when every variant is a unique newtype: each routed to
/// `A`'s `ApplyEvent` for its type.
fn dispatch_impl(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    if !variants::dispatchable(variants) || !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let name = &input.ident;
    let variants = variants::unique_newtypes(variants)
        .into_iter()
        .map(|(variant, ty)| {
            let ident = variant.ident;
            quote! { #ident(#ty) }
        });
    // Through a declarative macro of the core (see `__dispatch_event_impl`).
    quote! {
        ::cqrskit::__dispatch_event_impl! { #name { #(#variants),* } }
    }
}

/// When the input is wrong: an impl that keeps code using the trait compiling.
pub(crate) fn fallback(input: &DeriveInput) -> TokenStream {
    if !matches!(input.data, syn::Data::Enum(_)) {
        return TokenStream::new();
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        impl #impl_generics ::cqrskit::DomainEvent for #name #ty_generics #where_clause {
            const EVENT_TYPES: &'static [&'static str] = &[];
            fn event_type(&self) -> &'static str {
                ::core::unreachable!()
            }
        }
    }
}

//! `#[derive(EventUnion)]`: one event type over several aggregates' event
//! enums, for projectors and process managers that read more than one.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident, Type};

use crate::domain_event;
use crate::errors::{Errors, with_fallback};

/// One member: `Book(BookEvent)`.
struct Member<'a> {
    ident: &'a Ident,
    ty: &'a Type,
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let members = parse(input, &mut errors);
    match errors.finish() {
        Ok(()) => generate(input, &members),
        Err(error) => with_fallback(error, fallback(input)),
    }
}

fn parse<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Vec<Member<'a>> {
    let syn::Data::Enum(data) = &input.data else {
        errors.at(
            &input.ident,
            "`EventUnion` can only be derived for enums: one newtype variant per event enum it joins, `Book(BookEvent)`",
        );
        return Vec::new();
    };
    if !input.generics.params.is_empty() {
        errors.at(
            &input.generics,
            "an event union cannot be generic: its stored type names are fixed when it compiles",
        );
    }
    if data.variants.is_empty() {
        errors.at(
            &input.ident,
            "an event union joins at least one event enum: add a variant `Book(BookEvent)`",
        );
    }
    let mut members: Vec<Member<'_>> = Vec::new();
    for variant in &data.variants {
        match &variant.fields {
            syn::Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                let ty = &fields.unnamed[0].ty;
                let text = quote!(#ty).to_string();
                if let Some(earlier) = members.iter().find(|m| {
                    let earlier = m.ty;
                    quote!(#earlier).to_string() == text
                }) {
                    errors.at(
                        ty,
                        format!(
                            "`{}` is joined twice: variant `{}` holds it already",
                            text.replace(' ', ""),
                            earlier.ident
                        ),
                    );
                }
                members.push(Member {
                    ident: &variant.ident,
                    ty,
                });
            }
            _ => errors.at(
                variant,
                format!(
                    "every variant of an event union holds one event enum: `{}(SomeEvent)`",
                    variant.ident
                ),
            ),
        }
    }
    members
}

fn generate(input: &DeriveInput, members: &[Member<'_>]) -> TokenStream {
    let name = &input.ident;
    let idents: Vec<&Ident> = members.iter().map(|member| member.ident).collect();
    let types: Vec<&Type> = members.iter().map(|member| member.ty).collect();
    let indexes = 0..members.len();
    let domain_event = quote! { ::cqrskit::DomainEvent };
    let serde = quote! { ::cqrskit::__private::serde };
    let json = quote! { ::cqrskit::__private::serde_json };
    let name_text = name.to_string();
    let variant_names: Vec<String> = idents.iter().map(ToString::to_string).collect();
    let variant_indexes = 0..u32::try_from(members.len()).unwrap_or(u32::MAX);
    quote! {
        #[automatically_derived]
        impl #domain_event for #name {
            const EVENT_TYPES: &'static [&'static str] =
                &::cqrskit::dispatch::union_event_types::<{ 0 #(+ <#types as #domain_event>::EVENT_TYPES.len())* }>(
                    &[#(<#types as #domain_event>::EVENT_TYPES),*],
                );

            const ENUMS: usize = 0 #(+ <#types as #domain_event>::ENUMS)*;

            fn event_type(&self) -> &'static str {
                match self {
                    #(Self::#idents(event) => #domain_event::event_type(event),)*
                }
            }

            fn event_version(&self) -> u32 {
                match self {
                    #(Self::#idents(event) => #domain_event::event_version(event),)*
                }
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<::std::boxed::Box<#json::value::RawValue>, #json::Error> {
                match self {
                    #(Self::#idents(event) => #domain_event::encode(event),)*
                }
            }

            fn decode(
                event_type: &str,
                event_version: u32,
                payload: &str,
            ) -> ::core::result::Result<Self, ::cqrskit::PayloadError> {
                #(
                    if <#types as #domain_event>::EVENT_TYPES.contains(&event_type) {
                        return <#types as #domain_event>::decode(event_type, event_version, payload)
                            .map(Self::#idents);
                    }
                )*
                ::core::result::Result::Err(::cqrskit::PayloadError::UnknownEventType {
                    event_type: ::std::string::String::from(event_type),
                })
            }
        }

        // Evaluated with the crate, so two members storing one name fail the
        // build even where nothing reads the union's own list.
        const _: &[&str] = <#name as #domain_event>::EVENT_TYPES;

        #(
            #[automatically_derived]
            impl ::core::convert::From<#types> for #name {
                fn from(event: #types) -> Self {
                    Self::#idents(event)
                }
            }

            #[automatically_derived]
            impl<__T, __V> ::cqrskit::dispatch::EventVariant<__T, ::cqrskit::dispatch::Member<#indexes, __V>> for #name
            where
                #types: ::cqrskit::dispatch::EventVariant<__T, __V>,
            {
                const EVENT_TYPE: &'static str =
                    <#types as ::cqrskit::dispatch::EventVariant<__T, __V>>::EVENT_TYPE;

                fn as_variant(&self) -> ::core::option::Option<&__T> {
                    match self {
                        Self::#idents(event) => ::cqrskit::dispatch::EventVariant::<__T, __V>::as_variant(event),
                        #[allow(unreachable_patterns)]
                        _ => ::core::option::Option::None,
                    }
                }
            }
        )*

        // Tagged by the union's own variant, as serde tags any enum, with
        // the member's form inside: members with variants of one name stay
        // apart. (Stored events never go through this: they are encoded and
        // decoded by type name.)
        #[automatically_derived]
        impl #serde::Serialize for #name {
            fn serialize<__S: #serde::Serializer>(
                &self,
                serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                match self {
                    #(Self::#idents(event) => serializer.serialize_newtype_variant(
                        #name_text, #variant_indexes, #variant_names, event,
                    ),)*
                }
            }
        }

        const _: () = {
            #[derive(#serde::Deserialize)]
            #[serde(crate = "::cqrskit::__private::serde", rename = #name_text)]
            enum __Tagged {
                #(#idents(#types),)*
            }

            #[automatically_derived]
            impl<'de> #serde::Deserialize<'de> for #name {
                fn deserialize<__D: #serde::Deserializer<'de>>(
                    deserializer: __D,
                ) -> ::core::result::Result<Self, __D::Error> {
                    ::core::result::Result::Ok(
                        match <__Tagged as #serde::Deserialize>::deserialize(deserializer)? {
                            #(__Tagged::#idents(event) => Self::#idents(event),)*
                        },
                    )
                }
            }
        };
    }
}

/// When the input is wrong: the traits code using the union relies on, so
/// the real mistake is not buried under follow-on errors. None for a
/// generic union or a non-enum: their mistake is the one reported.
fn fallback(input: &DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let domain_event = domain_event::fallback(input);
    if domain_event.is_empty() {
        return domain_event;
    }
    let name = &input.ident;
    let serde = quote! { ::cqrskit::__private::serde };
    quote! {
        #domain_event

        impl #serde::Serialize for #name {
            fn serialize<__S: #serde::Serializer>(
                &self,
                _: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                ::core::unreachable!()
            }
        }

        impl<'de> #serde::Deserialize<'de> for #name {
            fn deserialize<__D: #serde::Deserializer<'de>>(
                _: __D,
            ) -> ::core::result::Result<Self, __D::Error> {
                ::core::unreachable!()
            }
        }
    }
}

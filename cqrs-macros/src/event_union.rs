//! `#[derive(EventUnion)]`: one event type over several aggregates' event
//! enums, for projectors and process managers that read more than one.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Ident, Type};

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
        Err(error) => with_fallback(error, TokenStream::new()),
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
    let mut members = Vec::new();
    for variant in &data.variants {
        match &variant.fields {
            syn::Fields::Unnamed(fields) if fields.unnamed.len() == 1 => members.push(Member {
                ident: &variant.ident,
                ty: &fields.unnamed[0].ty,
            }),
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
    let names_list = types
        .iter()
        .map(|ty| quote!(#ty).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let no_match = format!("a stored event of none of the enums {names_list} that `{name}` joins");
    quote! {
        #[automatically_derived]
        impl #domain_event for #name {
            const EVENT_TYPES: &'static [&'static str] =
                &::cqrskit::dispatch::union_event_types::<{ 0 #(+ <#types as #domain_event>::EVENT_TYPES.len())* }>(
                    &[#(<#types as #domain_event>::EVENT_TYPES),*],
                );

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

        // The member's own form: an externally tagged enum value.
        #[automatically_derived]
        impl #serde::Serialize for #name {
            fn serialize<__S: #serde::Serializer>(
                &self,
                serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                match self {
                    #(Self::#idents(event) => #serde::Serialize::serialize(event, serializer),)*
                }
            }
        }

        // Each member tried in turn on the buffered value: their variant
        // names tell them apart (stored events decode by type name instead).
        #[automatically_derived]
        impl<'de> #serde::Deserialize<'de> for #name {
            fn deserialize<__D: #serde::Deserializer<'de>>(
                deserializer: __D,
            ) -> ::core::result::Result<Self, __D::Error> {
                let value = <#json::Value as #serde::Deserialize>::deserialize(deserializer)?;
                #(
                    if let ::core::result::Result::Ok(event) =
                        <#types as #serde::Deserialize>::deserialize(&value)
                    {
                        return ::core::result::Result::Ok(Self::#idents(event));
                    }
                )*
                ::core::result::Result::Err(<__D::Error as #serde::de::Error>::custom(#no_match))
            }
        }
    }
}

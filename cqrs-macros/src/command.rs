//! `#[derive(Command)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::errors::{Errors, with_fallback};
use crate::variants::{self, AttrSpec, Variant};

const SPEC: AttrSpec = AttrSpec {
    attr: "command",
    version: false,
    creates: true,
    derive: "Command",
};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let variants = variants::parse(input, &SPEC, &mut errors);
    match (errors.finish(), variants) {
        (Ok(()), Some(variants)) => generate(input, &variants),
        (Err(error), _) => with_fallback(error, fallback(input)),
        (Ok(()), None) => fallback(input),
    }
}

fn generate(input: &DeriveInput, variants: &[Variant<'_>]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let names = variants.iter().map(|v| v.name.as_str());
    let patterns = variants.iter().map(variants::any_pattern);
    let from_impls = variants::from_impls(input, variants);
    let dispatch = dispatch_impl(input, variants);
    let creating: Vec<_> = variants
        .iter()
        .filter(|variant| variant.creates)
        .map(variants::any_pattern)
        .collect();
    let creates = (!creating.is_empty()).then(|| {
        quote! {
            fn creates_aggregate(&self) -> bool {
                ::core::matches!(self, #(#creating)|*)
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics ::cqrskit::Command for #name #ty_generics #where_clause {
            fn command_type(&self) -> &'static str {
                match self {
                    #(#patterns => #names,)*
                }
            }
            #creates
        }

        #from_impls
        #dispatch
    }
}

/// `DispatchCommand<A>` when every variant is a unique newtype: each routed to
/// `A`'s `HandleCommand` for its type.
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
        ::cqrskit::__dispatch_command_impl! { #name { #(#variants),* } }
    }
}

fn fallback(input: &DeriveInput) -> TokenStream {
    if !matches!(input.data, syn::Data::Enum(_)) {
        return TokenStream::new();
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        impl #impl_generics ::cqrskit::Command for #name #ty_generics #where_clause {
            fn command_type(&self) -> &'static str {
                ::core::unreachable!()
            }
        }
    }
}

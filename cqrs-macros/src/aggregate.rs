//! `#[aggregate(...)]` on an aggregate's `impl` block.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Ident, ItemImpl, LitInt, LitStr, Token, Type};

use crate::errors::{Errors, with_fallback};
use crate::handler::{self, Handler, Role};

/// The attribute's arguments.
#[derive(Default)]
struct Args {
    aggregate_type: Option<LitStr>,
    command: Option<Type>,
    event: Option<Type>,
    error: Option<Type>,
    services: Option<Type>,
    snapshot_version: Option<LitInt>,
    ignore: Vec<Type>,
}

const USAGE: &str = "#[aggregate(type = \"account\", command = AccountCommand, event = AccountEvent, error = AccountError)]";

fn parse_args(input: ParseStream<'_>) -> syn::Result<Args> {
    let mut args = Args::default();
    while !input.is_empty() {
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        let duplicate = || syn::Error::new(key.span(), format!("`{key}` is given twice"));
        match key.to_string().as_str() {
            "ignore" => {
                let content;
                syn::parenthesized!(content in input);
                let types = Punctuated::<Type, Token![,]>::parse_terminated(&content)?;
                args.ignore.extend(types);
            }
            name => {
                input.parse::<Token![=]>()?;
                match name {
                    "type" if args.aggregate_type.is_some() => return Err(duplicate()),
                    "type" => args.aggregate_type = Some(input.parse()?),
                    "command" if args.command.is_some() => return Err(duplicate()),
                    "command" => args.command = Some(input.parse()?),
                    "event" if args.event.is_some() => return Err(duplicate()),
                    "event" => args.event = Some(input.parse()?),
                    "error" if args.error.is_some() => return Err(duplicate()),
                    "error" => args.error = Some(input.parse()?),
                    "services" if args.services.is_some() => return Err(duplicate()),
                    "services" => args.services = Some(input.parse()?),
                    "snapshot_version" => args.snapshot_version = Some(input.parse()?),
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!(
                                "unknown `aggregate` argument `{key}`: expected `type`, `command`, `event`, `error`, `services`, `snapshot_version` or `ignore(...)`"
                            ),
                        ));
                    }
                }
            }
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(args)
}

pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let args = errors.ok(parse_args.parse2(args)).unwrap_or_default();
    let handlers = handler::take(&mut item, &[Role::Command, Role::Apply], &mut errors);
    let required = [
        ("type", args.aggregate_type.is_some(), "type = \"account\""),
        (
            "command",
            args.command.is_some(),
            "command = AccountCommand",
        ),
        ("event", args.event.is_some(), "event = AccountEvent"),
        ("error", args.error.is_some(), "error = AccountError"),
    ];
    for (key, given, example) in required {
        if !given {
            errors.push(syn::Error::new(
                Span::call_site(),
                format!("missing `{key}` argument (`{example}`): expected {USAGE}"),
            ));
        }
    }
    if let Some(version) = &args.snapshot_version {
        if !matches!(version.base10_parse::<u32>(), Ok(1..)) {
            errors.at(version, "`snapshot_version` is a whole number from 1 up");
        }
    }
    if let Some(name) = &args.aggregate_type {
        if name.value().trim().is_empty() {
            errors.at(name, "the aggregate type cannot be empty");
        }
    }
    check_ignored(&args, &handlers, &mut errors);
    if item.trait_.is_some() {
        errors.at(&item.self_ty, "`#[aggregate]` goes on an inherent impl block (`impl MyAggregate { ... }`), not a trait impl");
    }

    let generated = match errors.finish() {
        Ok(()) => generate(&args, &item, &handlers),
        Err(error) => with_fallback(error, fallback(&args, &item)),
    };
    quote! {
        #item
        #generated
    }
}

fn check_ignored(args: &Args, handlers: &[Handler], errors: &mut Errors) {
    let mut seen: Vec<String> = Vec::new();
    for ty in &args.ignore {
        let key = ty.to_token_stream().to_string();
        if let Some(handler) = handlers
            .iter()
            .find(|h| h.role == Role::Apply && h.message.to_token_stream().to_string() == key)
        {
            errors.at(
                ty,
                format!(
                    "`{key}` is applied by `{}` and listed in `ignore(...)`: keep one",
                    handler.method
                ),
            );
        }
        if seen.contains(&key) {
            errors.at(ty, format!("`{key}` is listed twice in `ignore(...)`"));
        }
        seen.push(key);
    }
}

fn generate(args: &Args, item: &ItemImpl, handlers: &[Handler]) -> TokenStream {
    let (Some(aggregate_type), Some(command), Some(event), Some(error)) = (
        &args.aggregate_type,
        &args.command,
        &args.event,
        &args.error,
    ) else {
        return TokenStream::new();
    };
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let services = args
        .services
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(()));
    let snapshot_version = args
        .snapshot_version
        .as_ref()
        .map(|version| quote! { const SNAPSHOT_VERSION: u32 = #version; });
    // Spanned so that "no handler for X" points at the enum named in the attribute.
    let dispatch_command = quote_spanned! {command.span()=>
        <#command as ::cqrs_core::dispatch::DispatchCommand<Self>>::dispatch(command, self, services)
    };
    let dispatch_event = quote_spanned! {event.span()=>
        <#event as ::cqrs_core::dispatch::DispatchEvent<Self>>::dispatch(event, self)
    };

    let handler_impls = handlers.iter().map(|handler| {
        let method = &handler.method;
        let message = &handler.message;
        match handler.role {
            Role::Command => {
                let services_arg = handler.takes_context.then(|| quote! { , services });
                let call = quote_spanned! {method.span()=> Self::#method(self, command #services_arg) };
                let body = if handler.is_async {
                    call
                } else {
                    quote! { ::core::future::ready(#call) }
                };
                quote! {
                    #[automatically_derived]
                    impl #impl_generics ::cqrs_core::dispatch::HandleCommand<#message> for #self_ty #where_clause {
                        fn handle_command(
                            &self,
                            command: &#message,
                            services: &#services,
                        ) -> impl ::core::future::Future<
                            Output = ::core::result::Result<::std::vec::Vec<#event>, #error>,
                        > + ::core::marker::Send {
                            let _ = services;
                            #body
                        }
                    }
                }
            }
            Role::Apply | Role::Project => quote! {
                #[automatically_derived]
                impl #impl_generics ::cqrs_core::dispatch::ApplyEvent<#message> for #self_ty #where_clause {
                    fn apply_event(&mut self, event: &#message) {
                        Self::#method(self, event)
                    }
                }
            },
        }
    });
    let ignored = args.ignore.iter().map(|ty| {
        quote! {
            #[automatically_derived]
            impl #impl_generics ::cqrs_core::dispatch::ApplyEvent<#ty> for #self_ty #where_clause {
                fn apply_event(&mut self, _event: &#ty) {}
            }
        }
    });

    quote! {
        #[automatically_derived]
        impl #impl_generics ::cqrs_core::Aggregate for #self_ty #where_clause {
            const TYPE: &'static str = #aggregate_type;
            #snapshot_version
            type Command = #command;
            type Event = #event;
            type Error = #error;
            type Services = #services;

            fn handle(
                &self,
                command: &Self::Command,
                services: &Self::Services,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<::std::vec::Vec<Self::Event>, Self::Error>,
            > + ::core::marker::Send {
                #dispatch_command
            }

            fn apply(&mut self, event: &Self::Event) {
                #dispatch_event
            }
        }

        #(#handler_impls)*
        #(#ignored)*
    }
}

/// When the input is wrong but the types are known: an `Aggregate` impl so the
/// code using the aggregate does not add errors of its own.
fn fallback(args: &Args, item: &ItemImpl) -> TokenStream {
    let (Some(command), Some(event), Some(error)) = (&args.command, &args.event, &args.error)
    else {
        return TokenStream::new();
    };
    if item.trait_.is_some() {
        return TokenStream::new();
    }
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let services = args
        .services
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(()));
    quote! {
        impl #impl_generics ::cqrs_core::Aggregate for #self_ty #where_clause {
            const TYPE: &'static str = "";
            type Command = #command;
            type Event = #event;
            type Error = #error;
            type Services = #services;
            fn handle(
                &self,
                _: &Self::Command,
                _: &Self::Services,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<::std::vec::Vec<Self::Event>, Self::Error>,
            > + ::core::marker::Send {
                async { ::core::unreachable!() }
            }
            fn apply(&mut self, _: &Self::Event) {}
        }
    }
}

//! `#[aggregate(...)]` on an aggregate's `impl` block.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{ItemImpl, LitInt, LitStr, Token, Type};

use crate::args;
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

fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    args::parse_list(tokens, errors, |key, input| {
        let name = key.to_string();
        if name == "ignore" {
            let content;
            syn::parenthesized!(content in input);
            args.ignore
                .extend(Punctuated::<Type, Token![,]>::parse_terminated(&content)?);
            return Ok(());
        }
        let known = [
            "type",
            "command",
            "event",
            "error",
            "services",
            "snapshot_version",
        ];
        if !known.contains(&name.as_str()) {
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown `aggregate` argument `{key}`: expected `type`, `command`, `event`, `error`, `services`, `snapshot_version` or `ignore(...)`"
                ),
            ));
        }
        input.parse::<Token![=]>()?;
        let duplicate = || syn::Error::new(key.span(), format!("`{key}` is given twice"));
        match name.as_str() {
            "type" => set(&mut args.aggregate_type, input.parse()?, duplicate),
            "command" => set(&mut args.command, input.parse()?, duplicate),
            "event" => set(&mut args.event, input.parse()?, duplicate),
            "error" => set(&mut args.error, input.parse()?, duplicate),
            "services" => set(&mut args.services, input.parse()?, duplicate),
            _ => set(&mut args.snapshot_version, input.parse()?, duplicate),
        }
    });
    args
}

fn set<T>(
    slot: &mut Option<T>,
    value: T,
    duplicate: impl FnOnce() -> syn::Error,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate());
    }
    *slot = Some(value);
    Ok(())
}

pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(args, &mut errors);
    let handlers = handler::take(&mut item, &[Role::Command, Role::Apply], &mut errors);
    let missing: Vec<&str> = [
        ("`type`", args.aggregate_type.is_some()),
        ("`command`", args.command.is_some()),
        ("`event`", args.event.is_some()),
        ("`error`", args.error.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, given)| (!given).then_some(key))
    .collect();
    if !missing.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!("missing {}: expected {USAGE}", missing.join(", ")),
        ));
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
    check_services(&args, &handlers, &mut errors);
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

/// A handler that takes services while the attribute declares none would
/// otherwise fail deep in the generated code (`Services == T`, "expected
/// `&T`, found `&()`"): say what to add instead.
fn check_services(args: &Args, handlers: &[Handler], errors: &mut Errors) {
    if args.services.is_some() {
        return;
    }
    for handler in handlers
        .iter()
        .filter(|handler| handler.role == Role::Command)
    {
        let Some(ty) = &handler.second else { continue };
        if matches!(ty, Type::Tuple(unit) if unit.elems.is_empty()) {
            continue;
        }
        let name = ty.to_token_stream().to_string();
        errors.at(
            ty,
            format!(
                "`{}` takes services of type `{name}`, but `#[aggregate]` declares none: add `services = {name}` to its arguments",
                handler.method
            ),
        );
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
        <#command as ::cqrskit::dispatch::DispatchCommand<Self>>::dispatch(command, self, services)
    };
    let dispatch_event = quote_spanned! {event.span()=>
        <#event as ::cqrskit::dispatch::DispatchEvent<Self>>::dispatch(event, self)
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
                    impl #impl_generics ::cqrskit::dispatch::HandleCommand<#message> for #self_ty #where_clause {
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
            Role::Apply | Role::Project | Role::Reset | Role::Setup => quote! {
                #[automatically_derived]
                impl #impl_generics ::cqrskit::dispatch::ApplyEvent<#message> for #self_ty #where_clause {
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
            impl #impl_generics ::cqrskit::dispatch::ApplyEvent<#ty> for #self_ty #where_clause {
                fn apply_event(&mut self, _event: &#ty) {}
            }
        }
    });

    quote! {
        #[automatically_derived]
        impl #impl_generics ::cqrskit::Aggregate for #self_ty #where_clause {
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
        impl #impl_generics ::cqrskit::Aggregate for #self_ty #where_clause {
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

//! `#[projector(...)]` on a projector's `impl` block.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemImpl, LitStr, Type};

use crate::args;
use crate::errors::{Errors, with_fallback};
use crate::handler::{self, Handler, Role};

pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::EventAndName::parse(args, "projector", &mut errors);
    let handlers = handler::take(
        &mut item,
        &[Role::Project, Role::Reset, Role::Setup],
        &mut errors,
    );
    let context = context_type(&handlers, &mut errors);
    if args.event.is_none() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `event` argument: expected #[projector(event = AccountEvent)] (and optionally `name = \"...\"`)",
        ));
    }
    if item.trait_.is_some() {
        errors.at(&item.self_ty, "`#[projector]` goes on an inherent impl block (`impl MyProjector { ... }`), not a trait impl");
    }
    if !handlers.iter().any(|handler| handler.role == Role::Project) {
        errors.at(&item.self_ty, "a projector needs at least one `#[project]` method, taking `&` an event type of its enum");
    }
    if let Some(name) = &args.name {
        if name.value().trim().is_empty() {
            errors.at(
                name,
                "the projector name cannot be empty: it keys its checkpoint",
            );
        }
    }
    let generated = match (errors.finish(), &args.event) {
        (Ok(()), Some(event)) => generate(&args, event, context.as_ref(), &item, &handlers),
        (Err(error), _) => with_fallback(error, TokenStream::new()),
        (Ok(()), None) => TokenStream::new(),
    };
    quote! {
        #item
        #generated
    }
}

/// The context type the methods take, if any; they must agree on it.
fn context_type(handlers: &[Handler], errors: &mut Errors) -> Option<Type> {
    let mut found: Option<&Type> = None;
    for handler in handlers {
        let Some(context) = &handler.context else {
            continue;
        };
        match found {
            None => found = Some(context),
            Some(first)
                if first.to_token_stream().to_string() == context.to_token_stream().to_string() => {
            }
            Some(first) => errors.at(
                context,
                format!(
                    "every method of a projector takes the same context: `{}` here, `{}` before",
                    context.to_token_stream(),
                    first.to_token_stream()
                ),
            ),
        }
    }
    found.cloned()
}

/// `AccountSummaries` -> `account_summaries`.
pub(crate) fn snake_case(ty: &Type) -> String {
    let name = match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut snake = String::with_capacity(name.len() + 4);
    for (index, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if index > 0 {
                snake.push('_');
            }
            snake.extend(ch.to_lowercase());
        } else {
            snake.push(ch);
        }
    }
    snake
}

fn generate(
    args: &args::EventAndName,
    event: &Type,
    context: Option<&Type>,
    item: &ItemImpl,
    handlers: &[Handler],
) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let name = args
        .name
        .as_ref()
        .map_or_else(|| snake_case(self_ty), LitStr::value);
    let projects: Vec<&Handler> = handlers
        .iter()
        .filter(|h| h.role == Role::Project)
        .collect();
    let event_types = projects.iter().map(|handler| {
        let message = &handler.message;
        let event = respan(event, message.span());
        // Spanned so that "X is not an event of E" points at the method's parameter.
        quote_spanned! {message.span()=>
            <#event as ::cqrskit::dispatch::EventVariant<#message, _>>::EVENT_TYPE
        }
    });
    let branches = projects.iter().map(|handler| {
        let method = &handler.method;
        let message = &handler.message;
        let event = respan(event, message.span());
        let envelope_arg = handler.takes_context.then(|| quote! { , envelope });
        let context_arg = handler.context.is_some().then(|| quote! { , context });
        let call = call(handler, quote! { Self::#method(self, event #envelope_arg #context_arg) });
        quote_spanned! {message.span()=>
            if let ::core::option::Option::Some(event) =
                <#event as ::cqrskit::dispatch::EventVariant<#message, _>>::as_variant(&envelope.payload)
            {
                return #call;
            }
        }
    });
    // Only a method that takes the envelope can see the metadata.
    let reads_metadata = projects.iter().any(|handler| handler.takes_context);
    // Without a context parameter the projector runs in-process, with `()`.
    let context_ty = match context {
        Some(context) => quote! { #context },
        None => quote! { () },
    };
    let hook = |role: Role, name: TokenStream| {
        handlers.iter().find(|h| h.role == role).map(|handler| {
            let method = &handler.method;
            let context_arg = handler.context.is_some().then(|| quote! { context });
            let call = call(handler, quote! { Self::#method(self, #context_arg) });
            quote! {
                async fn #name(
                    &self,
                    context: &mut #context_ty,
                ) -> ::core::result::Result<(), ::cqrskit::BoxError> {
                    let _ = &context;
                    #call
                }
            }
        })
    };
    let reset = hook(Role::Reset, quote! { reset });
    let setup = hook(Role::Setup, quote! { setup });
    quote! {
        impl #impl_generics #self_ty #where_clause {
            /// The stored event types this projector handles: those of its
            /// `#[project]` methods. Stores deliver only these.
            pub const EVENT_TYPES: &'static [&'static str] = &[#(#event_types),*];
        }

        #[automatically_derived]
        #[::cqrskit::async_trait]
        impl #impl_generics ::cqrskit::Projector<#context_ty> for #self_ty #where_clause {
            type Event = #event;

            fn name(&self) -> &str {
                #name
            }

            fn event_types(&self) -> &'static [&'static str] {
                Self::EVENT_TYPES
            }

            fn reads_metadata(&self) -> bool {
                #reads_metadata
            }

            async fn project(
                &self,
                envelope: &::cqrskit::EventEnvelope<#event>,
                context: &mut #context_ty,
            ) -> ::core::result::Result<(), ::cqrskit::BoxError> {
                let _ = &context;
                #(#branches)*
                ::core::result::Result::Ok(())
            }

            #setup

            #reset
        }
    }
}

/// The call of a handler method, awaited if async, with its result (or unit)
/// turned into `Result<(), BoxError>`.
fn call(handler: &Handler, call: TokenStream) -> TokenStream {
    let call = if handler.is_async {
        quote! { #call.await }
    } else {
        call
    };
    if handler.returns {
        quote! { #call.map_err(::core::convert::Into::into) }
    } else {
        quote! {{ #call; ::core::result::Result::Ok(()) }}
    }
}

/// `tokens` with every span set to `span`, so that an error about them points
/// at the method parameter the user wrote rather than the attribute.
pub(crate) fn respan(tokens: &impl quote::ToTokens, span: Span) -> TokenStream {
    tokens
        .to_token_stream()
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(&group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

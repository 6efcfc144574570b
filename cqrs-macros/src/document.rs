//! `#[document(...)]` on a document read model's `impl` block: `#[apply]`,
//! `#[delete]` and `#[id]` methods become its `Document` impl.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, LitStr, ReturnType, Signature, Type};

use crate::args;
use crate::errors::{Errors, with_fallback};
use crate::projector::{respan, snake_case};

/// What a marked method of a document does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// `#[apply]`: changes the document (`&mut self`).
    Apply,
    /// `#[delete]`: says whether the event removes the document (`&self`, `-> bool`).
    Delete,
    /// `#[id]`: the ids of the documents an event touches (no receiver).
    Id,
    /// `#[merge]`: folds another state into this one (session windows).
    Merge,
}

impl Role {
    const ALL: [Role; 4] = [Role::Apply, Role::Delete, Role::Id, Role::Merge];

    fn marker(self) -> &'static str {
        match self {
            Role::Apply => "apply",
            Role::Delete => "delete",
            Role::Id => "id",
            Role::Merge => "merge",
        }
    }

    fn shape(self) -> &'static str {
        match self {
            Role::Apply => {
                "`fn name(&mut self, event: &E)`, optionally followed by `id: &str` and/or `envelope: &EventEnvelope<Event>`, returning nothing, a `Change`, or a `Result` of either"
            }
            Role::Delete => {
                "`fn name(&self, event: &E) -> bool`, optionally followed by `id: &str` and/or `envelope: &EventEnvelope<Event>`"
            }
            Role::Merge => {
                "`fn name(&mut self, other: Self)`, returning nothing or a `Result<(), Error>`"
            }
            Role::Id => {
                "`fn name(event: &E) -> Ids` (no `self`; optionally followed by `envelope: &EventEnvelope<Event>`), where `Ids` is a `String`, `&str`, `Option`, `Vec` or slice of them"
            }
        }
    }
}

/// A parameter after the event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    Id,
    Envelope,
}

struct Method {
    role: Role,
    ident: syn::Ident,
    message: Type,
    extras: Vec<Extra>,
}

pub(crate) fn expand(args: TokenStream, mut item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::EventAndName::parse(args, "document", &mut errors);
    let Taken {
        methods,
        applies,
        merge,
    } = take(&mut item, &mut errors);
    if args.event.is_none() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `event` argument: expected #[document(event = OrderEvent)] (and optionally `name = \"...\"`)",
        ));
    }
    if item.trait_.is_some() {
        errors.at(
            &item.self_ty,
            "`#[document]` goes on the document type's inherent impl block (`impl OrderView { ... }`), not a trait impl",
        );
    }
    if applies == 0 {
        errors.at(
            &item.self_ty,
            "a document needs at least one `#[apply]` method, taking `&mut self` and `&` an event type of its enum",
        );
    }
    let name = args
        .name
        .as_ref()
        .map_or_else(|| snake_case(&item.self_ty), LitStr::value);
    if !valid_name(&name) {
        let message = format!(
            "`{name}` cannot name a read model's table: use 1 to 50 lower-case letters, digits and underscores, not starting with a digit"
        );
        match &args.name {
            Some(lit) => errors.at(lit, message),
            None => errors.at(&item.self_ty, format!("{message} (give `name = \"...\"`)")),
        }
    }
    check_pairs(&methods, &mut errors);
    let generated = match (errors.finish(), &args.event) {
        (Ok(()), Some(event)) => generate(&name, event, &item, &methods, merge.as_ref()),
        (Err(error), _) => with_fallback(error, TokenStream::new()),
        (Ok(()), None) => TokenStream::new(),
    };
    quote! {
        #item
        #generated
    }
}

fn valid_name(name: &str) -> bool {
    (1..=50).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Removes the markers from the methods of `item` and returns the marked
/// methods whose signatures passed the checks, and how many methods were
/// marked `#[apply]` (well formed or not).
fn take(item: &mut ItemImpl, errors: &mut Errors) -> Taken {
    let mut taken = Taken::default();
    for impl_item in &mut item.items {
        let ImplItem::Fn(function) = impl_item else {
            continue;
        };
        let mut marked = Vec::new();
        function.attrs.retain(|attr| {
            let Some(role) = Role::ALL.into_iter().find(|r| attr.path().is_ident(r.marker())) else {
                return true;
            };
            if role == Role::Apply {
                taken.applies += 1;
            }
            if matches!(attr.meta, syn::Meta::Path(_)) {
                marked.push((role, attr.clone()));
            } else {
                errors.at(
                    attr,
                    format!(
                        "`#[{}]` takes no arguments: the event it handles is the type of the method's `&` parameter, and an `#[id]` method for that type names the documents it touches",
                        role.marker()
                    ),
                );
            }
            false
        });
        match marked.as_slice() {
            [] => {}
            [(Role::Merge, attr)] => {
                if let Some(earlier) = &taken.merge {
                    errors.at(
                        attr,
                        format!("`{earlier}` is already the merge method: a document has one"),
                    );
                } else if check_merge(&function.sig, errors) {
                    taken.merge = Some(function.sig.ident.clone());
                }
            }
            [(role, _)] => {
                if let Some(method) = check(*role, &function.sig, errors) {
                    taken.methods.push(method);
                }
            }
            [_, (_, second), ..] => errors.at(
                second,
                "a method of a document has one role: remove one of its attributes",
            ),
        }
    }
    taken
}

/// What [`take`] found.
#[derive(Default)]
struct Taken {
    /// The well-formed `#[apply]`, `#[delete]` and `#[id]` methods.
    methods: Vec<Method>,
    /// How many methods were marked `#[apply]`, well formed or not.
    applies: usize,
    /// The `#[merge]` method, if well formed.
    merge: Option<syn::Ident>,
}

/// `fn name(&mut self, other: Self)`, returning nothing or a `Result`.
fn check_merge(sig: &Signature, errors: &mut Errors) -> bool {
    let shape = Role::Merge.shape();
    let mut ok = true;
    let mut fail = |tokens: &dyn ToTokens, message: String| {
        errors.at(tokens, message);
        ok = false;
    };
    if !sig.generics.params.is_empty() || sig.asyncness.is_some() {
        fail(
            &sig.ident,
            format!("a merge method is neither generic nor async; expected {shape}"),
        );
    }
    match sig.receiver() {
        Some(receiver) if receiver.reference.is_some() && receiver.mutability.is_some() => {}
        _ => fail(
            &sig.ident,
            format!("a merge method takes `&mut self`; expected {shape}"),
        ),
    }
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    match params.as_slice() {
        [param] if !matches!(&*param.ty, Type::Reference(_)) => {}
        _ => fail(
            &sig.inputs,
            format!("a merge method takes the other state by value; expected {shape}"),
        ),
    }
    ok
}

fn check(role: Role, sig: &Signature, errors: &mut Errors) -> Option<Method> {
    let mut ok = true;
    let mut fail = |tokens: &dyn ToTokens, message: String| {
        errors.at(tokens, message);
        ok = false;
    };
    let shape = role.shape();
    if !sig.generics.params.is_empty() {
        fail(
            &sig.generics,
            format!("document methods cannot be generic; expected {shape}"),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        fail(
            asyncness,
            format!(
                "a document method is not async: it changes the document in memory; expected {shape}"
            ),
        );
    }
    match (role, sig.receiver()) {
        (Role::Id, None) => {}
        (Role::Id, Some(receiver)) => fail(
            receiver,
            format!("an `#[id]` method takes no `self`: it reads the event only; expected {shape}"),
        ),
        (_, Some(receiver))
            if receiver.reference.is_some()
                && receiver.mutability.is_some() == (role == Role::Apply) => {}
        (_, Some(receiver)) => fail(
            receiver,
            if role == Role::Apply {
                "an `#[apply]` method takes `&mut self`: it changes the document".to_owned()
            } else {
                "a `#[delete]` method takes `&self`: it only says whether the event removes the document".to_owned()
            },
        ),
        (_, None) => fail(&sig.ident, format!("expected a method: {shape}")),
    }
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let message = match params.first().map(|p| &*p.ty) {
        Some(Type::Reference(reference)) if reference.mutability.is_none() => {
            Some((*reference.elem).clone())
        }
        Some(other) => {
            fail(
                other,
                format!(
                    "take the event by shared reference (`&{}`): expected {shape}",
                    other.to_token_stream()
                ),
            );
            None
        }
        None => {
            fail(
                &sig.ident,
                format!("the event parameter is missing: expected {shape}"),
            );
            None
        }
    };
    let mut extras = Vec::new();
    for param in params.iter().skip(1) {
        let extra = match &*param.ty {
            Type::Reference(r) if r.mutability.is_none() && is_str(&r.elem) => Extra::Id,
            Type::Reference(r) if r.mutability.is_none() => Extra::Envelope,
            other => {
                fail(
                    other,
                    format!(
                        "the parameters after the event are shared references: expected {shape}"
                    ),
                );
                continue;
            }
        };
        if extras.contains(&extra) || (role == Role::Id && extra == Extra::Id) {
            fail(&param.ty, format!("unexpected parameter: expected {shape}"));
        }
        extras.push(extra);
    }
    let returns = !matches!(sig.output, ReturnType::Default);
    if !returns && role != Role::Apply {
        fail(
            &sig.ident,
            format!(
                "a `#[{}]` method returns its answer: expected {shape}",
                role.marker()
            ),
        );
    }
    let message = message?;
    ok.then(|| Method {
        role,
        ident: sig.ident.clone(),
        message,
        extras,
    })
}

fn is_str(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("str"))
}

/// One `#[apply]` or `#[delete]` per event type, an `#[id]` only for a
/// type the document handles, and at most one.
fn check_pairs(methods: &[Method], errors: &mut Errors) {
    let key = |m: &Method| m.message.to_token_stream().to_string();
    let mut handlers: HashMap<String, &Method> = HashMap::new();
    let mut ids: HashMap<String, &Method> = HashMap::new();
    for method in methods {
        let slot = if method.role == Role::Id {
            &mut ids
        } else {
            &mut handlers
        };
        if let Some(earlier) = slot.get(&key(method)) {
            errors.at(
                &method.message,
                format!(
                    "`{}` already handles `{}` as `#[{}]`: one event type has one {}; remove `{}` or `{}`",
                    earlier.ident,
                    key(method),
                    earlier.role.marker(),
                    if method.role == Role::Id { "`#[id]` method" } else { "`#[apply]` or `#[delete]`" },
                    earlier.ident,
                    method.ident
                ),
            );
        } else {
            slot.insert(key(method), method);
        }
    }
    for method in methods.iter().filter(|m| m.role == Role::Id) {
        if !handlers.contains_key(&key(method)) {
            errors.at(
                &method.message,
                format!(
                    "`{}` names documents for `{}`, which no `#[apply]` or `#[delete]` method handles",
                    method.ident,
                    key(method)
                ),
            );
        }
    }
}

fn generate(
    name: &str,
    event: &Type,
    item: &ItemImpl,
    methods: &[Method],
    merge: Option<&syn::Ident>,
) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let handlers: Vec<&Method> = methods.iter().filter(|m| m.role != Role::Id).collect();
    let key = |m: &Method| m.message.to_token_stream().to_string();
    let id_methods: HashMap<String, &Method> = methods
        .iter()
        .filter(|m| m.role == Role::Id)
        .map(|m| (key(m), m))
        .collect();
    let variant = |message: &Type| {
        let event = respan(event, message.span());
        quote_spanned! {message.span()=> <#event as ::cqrskit::dispatch::EventVariant<#message, _>> }
    };
    let event_types = handlers.iter().map(|m| {
        let variant = variant(&m.message);
        quote_spanned! {m.message.span()=> #variant::EVENT_TYPE }
    });
    let identity = if id_methods.is_empty() {
        quote! { ::cqrskit::document::Identity::Stream }
    } else {
        quote! { ::cqrskit::document::Identity::Event }
    };
    let args = |m: &Method| {
        m.extras
            .iter()
            .map(|extra| match extra {
                Extra::Id => quote! { , id },
                Extra::Envelope => quote! { , envelope },
            })
            .collect::<TokenStream>()
    };
    let id_branches = handlers.iter().map(|m| {
        let variant = variant(&m.message);
        let push = match id_methods.get(&key(m)) {
            Some(id) => {
                let method = &id.ident;
                let args = args(id);
                quote! {
                    ::cqrskit::document::DocumentIds::push_into(Self::#method(event #args), ids);
                }
            }
            None => quote! {
                let _ = event;
                ids.push(::core::clone::Clone::clone(&envelope.stream.aggregate_id));
            },
        };
        quote! {
            if let ::core::option::Option::Some(event) = #variant::as_variant(&envelope.payload) {
                #push
                return;
            }
        }
    });
    let apply_branches = handlers.iter().map(|m| {
        let variant = variant(&m.message);
        let method = &m.ident;
        let args = args(m);
        let call = quote! { Self::#method(self, event #args) };
        let outcome = if m.role == Role::Apply {
            quote! { ::cqrskit::document::IntoChange::into_change(#call) }
        } else {
            quote! {
                ::core::result::Result::Ok(if #call {
                    ::cqrskit::document::Change::Deleted
                } else {
                    ::cqrskit::document::Change::Unchanged
                })
            }
        };
        quote! {
            if let ::core::option::Option::Some(event) = #variant::as_variant(&envelope.payload) {
                return #outcome;
            }
        }
    });
    let reads_metadata = methods.iter().any(|m| m.extras.contains(&Extra::Envelope));
    let merge = merge.map(|method| {
        quote! {
            fn merge(
                &mut self,
                other: Self,
            ) -> ::core::result::Result<(), ::cqrskit::BoxError> {
                ::cqrskit::document::IntoChange::into_change(Self::#method(self, other)).map(|_| ())
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_generics ::cqrskit::document::Document for #self_ty #where_clause {
            type Event = #event;
            const NAME: &'static str = #name;
            const EVENT_TYPES: &'static [&'static str] = &[#(#event_types),*];
            const IDENTITY: ::cqrskit::document::Identity = #identity;
            const READS_METADATA: bool = #reads_metadata;

            fn ids(
                envelope: &::cqrskit::EventEnvelope<#event>,
                ids: &mut ::cqrskit::__private::Vec<::std::string::String>,
            ) {
                #(#id_branches)*
            }

            fn apply(
                &mut self,
                id: &str,
                envelope: &::cqrskit::EventEnvelope<#event>,
            ) -> ::core::result::Result<::cqrskit::document::Change, ::cqrskit::BoxError> {
                let _ = id;
                #(#apply_branches)*
                ::core::result::Result::Ok(::cqrskit::document::Change::Unchanged)
            }

            #merge
        }
    }
}

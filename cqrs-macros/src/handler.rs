//! Handler methods inside an `#[aggregate]` or `#[projector]` impl block:
//! finding them by their marker attribute, and checking their signatures.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{FnArg, ImplItem, ItemImpl, ReturnType, Signature, Type};

use crate::errors::Errors;

/// What a marked method does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// `#[command]`: decides events for a command (`&self`).
    Command,
    /// `#[apply]`: evolves state by an event (`&mut self`).
    Apply,
    /// `#[project]`: projects an event (`&self`).
    Project,
    /// `#[reset]`: clears a projector's read model before a rebuild (`&self`).
    Reset,
    /// `#[setup]`: creates a projector's read model, idempotently (`&self`).
    Setup,
}

impl Role {
    fn marker(self) -> &'static str {
        match self {
            Role::Command => "command",
            Role::Apply => "apply",
            Role::Project => "project",
            Role::Reset => "reset",
            Role::Setup => "setup",
        }
    }

    fn home(self) -> &'static str {
        match self {
            Role::Command | Role::Apply => "#[aggregate]",
            Role::Project | Role::Reset | Role::Setup => "#[projector]",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Role::Command => "command",
            Role::Apply | Role::Project => "event",
            Role::Reset | Role::Setup => "read model",
        }
    }
}

/// A marked method whose signature passed the checks.
pub(crate) struct Handler {
    pub(crate) role: Role,
    pub(crate) method: syn::Ident,
    pub(crate) is_async: bool,
    /// `T` of the `&T` parameter: the command or event type it handles.
    pub(crate) message: Type,
    /// Whether it takes the optional second parameter (services, or the envelope).
    pub(crate) takes_context: bool,
    /// The `T` of that second parameter's `&T`, when it is a reference.
    pub(crate) second: Option<Type>,
    /// The `C` of a `&mut C` context parameter (projectors only).
    pub(crate) context: Option<Type>,
    /// Whether it declares a return type.
    pub(crate) returns: bool,
}

/// Removes the markers of `roles` from the methods of `item` and returns the
/// marked methods. Reports markers of other roles, bad signatures, and two
/// handlers for one type.
pub(crate) fn take(item: &mut ItemImpl, roles: &[Role], errors: &mut Errors) -> Vec<Handler> {
    let all = [
        Role::Command,
        Role::Apply,
        Role::Project,
        Role::Reset,
        Role::Setup,
    ];
    let mut handlers = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(function) = impl_item else {
            continue;
        };
        let mut marked: Vec<(Role, syn::Attribute)> = Vec::new();
        function.attrs.retain(|attr| {
            let Some(role) = all.iter().copied().find(|role| attr.path().is_ident(role.marker())) else {
                return true;
            };
            if !roles.contains(&role) {
                errors.at(
                    attr,
                    format!("`#[{}]` belongs in a `{}` impl block", role.marker(), role.home()),
                );
            } else if !matches!(attr.meta, syn::Meta::Path(_)) {
                errors.at(
                    attr,
                    format!(
                        "`#[{}]` takes no arguments: the {} it handles is the type of the method's `&` parameter",
                        role.marker(),
                        role.message()
                    ),
                );
            } else {
                marked.push((role, attr.clone()));
            }
            false
        });
        match marked.as_slice() {
            [] => {}
            [(role, _)] => {
                if let Some(handler) = check(*role, &function.sig, errors) {
                    handlers.push(handler);
                }
            }
            [_, (_, second), ..] => errors.at(
                second,
                "a method handles one thing: remove one of its handler attributes",
            ),
        }
    }
    report_duplicates(&handlers, errors);
    handlers
}

fn check(role: Role, sig: &Signature, errors: &mut Errors) -> Option<Handler> {
    let mut ok = true;
    let mut fail = |tokens: &dyn ToTokens, message: String| {
        errors.at(tokens, message);
        ok = false;
    };
    let what = role.message();
    let shape = match role {
        Role::Command => {
            "`fn name(&self, command: &C) -> Result<Vec<Event>, Error>` (optionally `async`, optionally with a second parameter `services: &Services`)"
        }
        Role::Apply => "`fn name(&mut self, event: &E)`",
        Role::Project => {
            "`async fn name(&self, event: &E) -> Result<(), Error>` (optionally followed by `envelope: &EventEnvelope<Event>` and then a context `&mut C`; `async` and the return type are optional)"
        }
        Role::Reset | Role::Setup => {
            "`async fn name(&self, context: &mut C) -> Result<(), Error>` (the context is optional; `async` and the return type are optional)"
        }
    };
    if !sig.generics.params.is_empty() {
        fail(
            &sig.generics,
            format!("handler methods cannot be generic; expected {shape}"),
        );
    }
    let wants_mut = role == Role::Apply;
    match sig.receiver() {
        Some(receiver) if receiver.reference.is_some() && receiver.mutability.is_some() == wants_mut => {}
        Some(receiver) => fail(
            receiver,
            match role {
                Role::Command => "a command handler takes `&self`: deciding never changes state (state changes in `#[apply]` methods)".to_owned(),
                Role::Apply => "an apply method takes `&mut self`: it evolves the state".to_owned(),
                Role::Project | Role::Reset | Role::Setup => "a projector method takes `&self`: keep the read model behind a connection or a lock".to_owned(),
            },
        ),
        None => fail(&sig.ident, format!("a handler is a method: expected {shape}")),
    }
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    // A projector method's trailing `&mut C` is its context; take it off first.
    let mut context = None;
    let mut rest: &[&syn::PatType] = &params;
    if matches!(role, Role::Project | Role::Reset | Role::Setup) {
        if let Some((last, before)) = rest.split_last() {
            if let Type::Reference(reference) = &*last.ty {
                if reference.mutability.is_some() {
                    context = Some((*reference.elem).clone());
                    rest = before;
                }
            }
        }
    }
    let message = if matches!(role, Role::Reset | Role::Setup) {
        if let Some(extra) = rest.first() {
            fail(extra, format!("unexpected parameter: expected {shape}"));
        }
        Some(Type::Verbatim(Default::default()))
    } else {
        let max = if role == Role::Apply { 1 } else { 2 };
        let message = match rest.first() {
            None => {
                fail(
                    &sig.ident,
                    format!("the {what} parameter is missing: expected {shape}"),
                );
                None
            }
            Some(param) => match &*param.ty {
                Type::Reference(reference) if reference.mutability.is_none() => {
                    Some((*reference.elem).clone())
                }
                other => {
                    fail(
                        other,
                        format!(
                            "take the {what} by shared reference (`&{}`): expected {shape}",
                            other.to_token_stream()
                        ),
                    );
                    None
                }
            },
        };
        if rest.len() > max {
            fail(rest[max], format!("too many parameters: expected {shape}"));
        }
        if let Some(param) = rest.get(1) {
            if !matches!(&*param.ty, Type::Reference(r) if r.mutability.is_none()) {
                fail(
                    &param.ty,
                    format!("the second parameter is taken by shared reference: expected {shape}"),
                );
            }
        }
        message
    };
    let returns = !matches!(sig.output, ReturnType::Default);
    match role {
        Role::Command if !returns => fail(
            &sig.ident,
            format!("a command handler returns its events or its error: expected {shape}"),
        ),
        Role::Apply if returns => fail(
            &sig.output,
            "an apply method returns nothing: an event already happened and cannot fail".to_owned(),
        ),
        Role::Apply if sig.asyncness.is_some() => fail(
            &sig.asyncness,
            "an apply method is not async: it only changes the state in memory".to_owned(),
        ),
        _ => {}
    }
    let message = message?;
    ok.then(|| Handler {
        role,
        method: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        message,
        takes_context: rest.len() == 2,
        second: rest.get(1).and_then(|param| match &*param.ty {
            Type::Reference(reference) => Some((*reference.elem).clone()),
            _ => None,
        }),
        context,
        returns,
    })
}

fn report_duplicates(handlers: &[Handler], errors: &mut Errors) {
    let mut first: HashMap<(Role, String), &Handler> = HashMap::new();
    for handler in handlers {
        let key = (handler.role, handler.message.to_token_stream().to_string());
        match first.get(&key) {
            Some(earlier) if matches!(handler.role, Role::Reset | Role::Setup) => errors.at(
                &handler.method,
                format!(
                    "`{}` is already the {} method: a projector has one",
                    earlier.method,
                    handler.role.marker()
                ),
            ),
            Some(earlier) => errors.at(
                &handler.message,
                format!(
                    "`{}` already handles `{}`: one {} has one handler; remove `{}` or `{}`",
                    earlier.method,
                    handler.message.to_token_stream(),
                    handler.role.message(),
                    earlier.method,
                    handler.method
                ),
            ),
            None => {
                first.insert(key, handler);
            }
        }
    }
}

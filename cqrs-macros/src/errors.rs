//! Collects every independent mistake in one item, so a user sees them all in
//! one build instead of fixing them one compile at a time.

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Errors found so far in one macro invocation.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records a mistake at `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error already built (from a parser, say).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// `Ok` when nothing was recorded, else every error as one.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.combined.map_or(Ok(()), Err)
    }
}

/// The errors as `compile_error!` invocations, followed by `fallback`: code
/// that keeps the rest of the user's crate compiling (the trait impls it
/// relies on), so the real mistake is not buried under follow-on errors.
pub(crate) fn with_fallback(error: syn::Error, fallback: TokenStream) -> TokenStream {
    let errors = error.to_compile_error();
    quote::quote! {
        #errors
        #fallback
    }
}

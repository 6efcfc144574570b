//! The keywords our attributes accept.

syn::custom_keyword!(name);
syn::custom_keyword!(version);
syn::custom_keyword!(command);
syn::custom_keyword!(event);
syn::custom_keyword!(error);
syn::custom_keyword!(services);
syn::custom_keyword!(snapshot_version);
syn::custom_keyword!(ignore);

//! `#[peerwire::protocol]`: a typed protocol defined once, as a trait.
//!
//! ```ignore
//! #[peerwire::protocol(name = "Fs", version = 1)]
//! pub trait Fs {
//!     /// How many bytes a file holds.
//!     #[idempotent]
//!     async fn stat(&self, path: String) -> Result<u64, peerwire::HandlerError>;
//!     /// Removes a file.
//!     async fn delete(&self, path: String) -> Result<bool, peerwire::HandlerError>;
//! }
//! ```
//!
//! generates the trait (each `async fn` becomes a method returning a `Send` future, so an
//! implementation can still write `async fn`), `fs_protocol(Arc<impl Fs>) -> Protocol` (the
//! trait's name in snake case, `_protocol` added unless it ends so already; the
//! server side, mounted with `ServerBuilder::protocol`), and `FsClient` (one typed method per
//! trait method, calling through a `ProtocolClient`; every method `m` also gets `m_with`,
//! taking `CallOptions` (deadline, context; for a stream, the stream's), and a unary one `m_on`,
//! calling over a given connection, so a server's handler can call its caller back). Every method takes `&self`, one request
//! argument (and, if it needs the caller, the call's `peerwire::Request`), and returns
//! `Result<T, HandlerError>`; `#[idempotent]` marks methods that may run more than once;
//! `#[engine(prost)]` picks the protobuf engine (serde by default); `#[rename = "wireName"]`
//! names the method on the wire (the Rust name by default). The protocol's name defaults to
//! the trait's and its version to 1.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, ItemTrait, Lit, MetaNameValue, Pat, PathArguments,
    ReturnType, Token, TraitItem, Type, parse_macro_input,
};

/// The protocol's name and version, from `#[protocol(name = "...", version = N)]`.
struct Args {
    name: Option<String>,
    version: u32,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated(input)?;
        let mut args = Self {
            name: None,
            version: 1,
        };
        for pair in pairs {
            let key = pair.path.get_ident().map(ToString::to_string);
            let Expr::Lit(lit) = &pair.value else {
                return Err(syn::Error::new(pair.value.span(), "expected a literal"));
            };
            match (key.as_deref(), &lit.lit) {
                (Some("name"), Lit::Str(s)) => args.name = Some(s.value()),
                (Some("version"), Lit::Int(i)) => args.version = i.base10_parse()?,
                _ => {
                    return Err(syn::Error::new(
                        pair.span(),
                        "expected `name = \"...\"` or `version = <integer>`",
                    ));
                }
            }
        }
        Ok(args)
    }
}

/// One method of the protocol.
struct Method {
    name: syn::Ident,
    /// The method's name on the wire (`#[rename = "..."]`, else the Rust name).
    wire: String,
    /// Whether the implementation also takes the call's `peerwire::Request`.
    with_request: bool,
    request: Type,
    response: Type,
    idempotent: bool,
    prost: bool,
    docs: Vec<Attribute>,
    /// The method reads a stream of requests (`Streaming<Q>`; `request` is `Q`).
    input_stream: bool,
    /// The method answers with a stream (`ItemStream<R>`; `response` is `R`).
    output_stream: bool,
}

/// Turns a trait of async methods into a typed protocol's server side and client; see the
/// crate's documentation.
#[proc_macro_attribute]
pub fn protocol(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as Args);
    let item = parse_macro_input!(item as ItemTrait);
    expand(args, item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(args: Args, mut item: ItemTrait) -> syn::Result<Tokens> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "a protocol trait takes no generic parameters",
        ));
    }
    let trait_name = item.ident.clone();
    let protocol_name = args.name.unwrap_or_else(|| trait_name.to_string());
    let version = args.version;
    let mut methods = Vec::new();
    for entry in &mut item.items {
        let TraitItem::Fn(f) = entry else {
            return Err(syn::Error::new(
                entry.span(),
                "a protocol trait holds only `async fn` methods",
            ));
        };
        let method = method(f)?;
        // `async fn m(&self, req: Q) -> R` becomes `fn m(&self, req: Q) -> impl Future<Output
        // = R> + Send`, so the futures can be spawned; implementations may keep `async fn`.
        let output = match &f.sig.output {
            ReturnType::Type(_, t) => t.clone(),
            ReturnType::Default => unreachable!("checked by `method`"),
        };
        f.sig.asyncness = None;
        f.sig.output = syn::parse_quote! {
            -> impl ::std::future::Future<Output = #output> + ::std::marker::Send
        };
        f.attrs.retain(|a| {
            !a.path().is_ident("idempotent")
                && !a.path().is_ident("engine")
                && !a.path().is_ident("rename")
        });
        methods.push(method);
    }
    item.supertraits
        .push(syn::parse_quote!(::std::marker::Send));
    item.supertraits
        .push(syn::parse_quote!(::std::marker::Sync));
    item.supertraits.push(syn::parse_quote!('static));

    let vis = &item.vis;
    let snake = to_snake(&trait_name.to_string());
    // `Fs` → `fs_protocol`; `ClientProtocol` → `client_protocol`.
    let protocol_fn = if snake.ends_with("_protocol") {
        format_ident!("{}", snake)
    } else {
        format_ident!("{}_protocol", snake)
    };
    let client = format_ident!("{}Client", trait_name);
    let registrations = methods.iter().map(|m| {
        let name = &m.name;
        let wire = &m.wire;
        let q = &m.request;
        let engine = engine(m.prost);
        let add = match (m.input_stream, m.output_stream, m.idempotent) {
            (false, true, _) => quote!(server_streaming),
            (true, false, _) => quote!(client_streaming),
            (true, true, _) => quote!(bidi_streaming),
            (false, false, true) => quote!(idempotent_method),
            (false, false, false) => quote!(method),
        };
        let q = if m.input_stream {
            quote!(::peerwire::service::Streaming<#q>)
        } else {
            quote!(#q)
        };
        let call = if m.with_request {
            quote!(<_ as #trait_name>::#name(&*s, request, ctx).await)
        } else {
            quote!({
                drop(ctx);
                <_ as #trait_name>::#name(&*s, request).await
            })
        };
        quote_spanned! {name.span()=>
            let s = service.clone();
            protocol = protocol.#add(#wire, #engine, move |request: #q, ctx: ::peerwire::Request| {
                let s = s.clone();
                async move { #call }
            });
        }
    });
    let calls = methods.iter().map(|m| {
        let name = &m.name;
        let with = format_ident!("{}_with", name);
        let wire = &m.wire;
        let (q, r) = (&m.request, &m.response);
        let engine = engine(m.prost);
        let docs = &m.docs;
        // What differs between the shapes: the request argument, the answer, the inner call,
        // and a line of the docs; the method and its `_with` twin are otherwise the same.
        let stream_bound = quote!(::peerwire::service::Stream<Item = #q> + ::std::marker::Send);
        let replies = quote!(::peerwire::service::ReplyStream<#r>);
        let (generics, arg, answer, inner, shape, cancel) = match (m.input_stream, m.output_stream)
        {
            (false, false) => (
                quote!(),
                quote!(request: &#q),
                quote!(#r),
                quote!(call_with),
                None,
                "Dropping the future abandons the call (a cancel frame tells the server).",
            ),
            (false, true) => (
                quote!(),
                quote!(request: &#q),
                replies,
                quote!(server_streaming),
                Some("Server streaming: the replies come as a stream."),
                "Dropping the returned stream stops the method on the server.",
            ),
            (true, false) => (
                quote!(<S: #stream_bound>),
                quote!(requests: S),
                quote!(#r),
                quote!(client_streaming),
                Some("Client streaming: every item of `requests` is sent, then the one reply comes."),
                "Dropping the future stops the method on the server.",
            ),
            (true, true) => (
                quote!(<S: #stream_bound + 'static>),
                quote!(requests: S),
                replies,
                quote!(bidi_streaming),
                Some("Bidirectional streaming: `requests` are sent while the replies come."),
                "Dropping the returned stream stops the method and the sending.",
            ),
        };
        let arg_name = if m.input_stream {
            quote!(requests)
        } else {
            quote!(request)
        };
        let shape = shape.map(|line| quote!(#[doc = ""] #[doc = #line]));
        let with_doc = format!("As [`Self::{name}`], with options (deadline, hash key, retry policy, context; for a stream, the stream's).");
        // A unary method can also be called over a given connection: a server's handler calling
        // its caller back.
        let on = (!m.input_stream && !m.output_stream).then(|| {
            let on = format_ident!("{}_on", name);
            let on_doc = format!("As [`Self::{name}`], over `conn`, an open connection, within `deadline`: a server's handler calls its caller back over the connection the call came on (the caller serves this protocol there with `peerwire::service::Callbacks`). Not retried.");
            quote! {
                #[doc = #on_doc]
                ///
                /// # Cancel safety
                ///
                /// Dropping the future abandons the call (a cancel frame tells the peer).
                pub async fn #on(
                    &self,
                    conn: &::peerwire::Connection,
                    request: &#q,
                    deadline: ::std::time::Duration,
                ) -> ::std::result::Result<#r, ::peerwire::Error> {
                    self.inner.call_on(conn, #wire, #engine, request, deadline).await
                }
            }
        });
        quote! {
            #(#docs)*
            #shape
            ///
            /// # Cancel safety
            ///
            #[doc = #cancel]
            pub async fn #name #generics(
                &self,
                peer: impl ::std::convert::Into<::peerwire::Peer>,
                #arg,
            ) -> ::std::result::Result<#answer, ::peerwire::Error> {
                self.#with(peer, #arg_name, ::peerwire::CallOptions::default()).await
            }

            #[doc = #with_doc]
            ///
            /// # Cancel safety
            ///
            /// As the method without options.
            pub async fn #with #generics(
                &self,
                peer: impl ::std::convert::Into<::peerwire::Peer>,
                #arg,
                options: ::peerwire::CallOptions,
            ) -> ::std::result::Result<#answer, ::peerwire::Error> {
                self.inner.#inner(peer, #wire, #engine, #arg_name, options).await
            }

            #on
        }
    });
    let doc_protocol = format!(
        "The server side of `{protocol_name}` version {version}: every method of [`{trait_name}`] on `service`, for `ServerBuilder::protocol`."
    );
    let doc_client = format!(
        "A typed client of `{protocol_name}` version {version}: one method per method of [`{trait_name}`]."
    );
    Ok(quote! {
        #item

        #[doc = #doc_protocol]
        #vis fn #protocol_fn<S: #trait_name>(service: ::std::sync::Arc<S>) -> ::peerwire::service::Protocol {
            let mut protocol = ::peerwire::service::Protocol::new(#protocol_name, #version);
            #(#registrations)*
            protocol
        }

        #[doc = #doc_client]
        #[derive(Debug, Clone)]
        #vis struct #client {
            inner: ::peerwire::service::ProtocolClient,
        }

        impl #client {
            /// A client calling through `client`'s connections.
            pub fn new(client: ::peerwire::Client) -> Self {
                Self {
                    inner: ::peerwire::service::ProtocolClient::new(client, #protocol_name, #version),
                }
            }

            #(#calls)*
        }
    })
}

fn engine(prost: bool) -> Tokens {
    if prost {
        quote!(::peerwire::service::Prost)
    } else {
        quote!(::peerwire::service::Serde)
    }
}

fn method(f: &syn::TraitItemFn) -> syn::Result<Method> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "a protocol method is an `async fn`",
        ));
    }
    if f.default.is_some() {
        return Err(syn::Error::new(
            f.span(),
            "a protocol method has no default body",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        other => {
            return Err(syn::Error::new(
                other.map_or(sig.span(), Spanned::span),
                "a protocol method takes `&self` first",
            ));
        }
    }
    let (request, with_request) = match (inputs.next(), inputs.next(), inputs.next()) {
        (Some(FnArg::Typed(arg)), None, None) if matches!(*arg.pat, Pat::Ident(_)) => {
            ((*arg.ty).clone(), false)
        }
        (Some(FnArg::Typed(arg)), Some(FnArg::Typed(ctx)), None)
            if matches!(*arg.pat, Pat::Ident(_)) && is_request(&ctx.ty) =>
        {
            ((*arg.ty).clone(), true)
        }
        _ => {
            return Err(syn::Error::new(
                sig.inputs.span(),
                "a protocol method takes one request argument after `&self` (and, optionally, the call's `peerwire::Request`)",
            ));
        }
    };
    let response = match &sig.output {
        ReturnType::Type(_, ty) => result_ok(ty).ok_or_else(|| {
            syn::Error::new(
                ty.span(),
                "a protocol method returns `Result<T, HandlerError>`",
            )
        })?,
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.span(),
                "a protocol method returns `Result<T, HandlerError>`",
            ));
        }
    };
    let mut idempotent = false;
    let mut prost = false;
    let mut wire = sig.ident.to_string();
    for attr in &f.attrs {
        if attr.path().is_ident("rename") {
            let value = &attr.meta.require_name_value()?.value;
            match value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => wire = s.value(),
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "expected `#[rename = \"wireName\"]`",
                    ));
                }
            }
        } else if attr.path().is_ident("idempotent") {
            idempotent = true;
        } else if attr.path().is_ident("engine") {
            let engine: syn::Ident = attr.parse_args()?;
            match engine.to_string().as_str() {
                "serde" => prost = false,
                "prost" => prost = true,
                _ => {
                    return Err(syn::Error::new(
                        engine.span(),
                        "the engine is `serde` or `prost`",
                    ));
                }
            }
        }
    }
    let (request, input_stream) = match generic_of(&request, "Streaming") {
        Some(q) => (q, true),
        None => (request, false),
    };
    let (response, output_stream) = match generic_of(&response, "ItemStream") {
        Some(r) => (r, true),
        None => (response, false),
    };
    if idempotent && (input_stream || output_stream) {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a streaming method is not idempotent: it is never retried, so `#[idempotent]` does not apply",
        ));
    }
    Ok(Method {
        name: sig.ident.clone(),
        wire,
        with_request,
        request,
        response,
        idempotent,
        prost,
        input_stream,
        output_stream,
        docs: f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect(),
    })
}

/// `T` of a type `Name<T>` (by its last path segment).
fn generic_of(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}

/// Whether `ty` names `peerwire::Request` (by its last path segment).
fn is_request(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Request"))
}

/// `T` of a `Result<T, _>` type.
fn result_ok(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) if args.args.len() == 2 => Some(t.clone()),
        _ => None,
    }
}

fn to_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

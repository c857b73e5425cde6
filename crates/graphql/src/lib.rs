//! Latchkey's GraphQL API: the schema, its own output types and the mapping
//! of application errors.
//!
//! Resolvers call only the application layer ([`latchkey_app::App`]): they
//! never see the store, and every key operation goes through
//! [`latchkey_app::App::key_admin`]'s permission check. The schema builds
//! without a database (see [`export_sdl`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

mod cloud;
mod context;
pub mod error;
mod key_policy;
mod limits;
mod mutation;
mod query;
mod types;
mod usage;
mod webhooks;

use async_graphql::{EmptySubscription, SDLExportOptions, Schema};
use latchkey_app::{App, AppError, Authentication};

pub use error::{gql_error, server_error};

use mutation::MutationRoot;
use query::QueryRoot;

/// The Latchkey schema type.
pub type LatchkeySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Deepest query accepted (the standard introspection query fits).
pub const MAX_QUERY_DEPTH: usize = 16;
/// Most complex query accepted. A page costs what one item selects times
/// `first`, so aliasing large pages runs into this quickly.
pub const MAX_QUERY_COMPLEXITY: usize = 5_000;
/// Most mutation fields in one operation: each one that changes a key hashes,
/// writes and mails, so aliases must not multiply that without bound.
pub const MAX_MUTATIONS_PER_OPERATION: usize = 10;
/// Longest document accepted, in bytes, checked before it is parsed: the
/// page's largest operation is under 2 KiB and GraphiQL's introspection
/// query about 2 KiB; hand-written queries stay far below.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Most tokens in one document, checked before it is parsed: GraphiQL's
/// introspection query has about 300.
pub const MAX_DOCUMENT_TOKENS: usize = 3_000;
/// Most top-level fields an anonymous caller may select: introspection
/// (`__schema` or `__type`, once) and `__typename`; everything else needs a
/// signed-in caller.
pub const MAX_ANONYMOUS_FIELDS: usize = 2;

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .limit_depth(MAX_QUERY_DEPTH)
        .limit_complexity(MAX_QUERY_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(16)
}

/// Builds the executable schema over `app`.
pub fn build_schema(app: App) -> LatchkeySchema {
    builder().data(app).finish()
}

/// The schema in SDL, with sorted fields, arguments and enum items, exactly as
/// checked in at `schema.graphql`. Needs no database.
pub fn export_sdl() -> String {
    builder().finish().sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_arguments().sorted_enum_items())
}

/// What executing one request gave.
#[derive(Debug)]
pub struct Executed {
    /// The GraphQL response.
    pub response: async_graphql::Response,
    /// Whether the request failed before execution (too large, unparsable,
    /// invalid or refused from the document alone): GraphQL over HTTP
    /// answers that 400 without `data`.
    pub request_error: bool,
}

/// Executes one GraphQL request for an (already authenticated) caller.
///
/// The document's size and tokens are checked before it is parsed, and it
/// is parsed once (the executor reuses the parse). `allow_mutations` is
/// false for HTTP GET, so that a link cannot change anything. Errors that
/// carry no code of ours (parse and validation errors) get
/// `GRAPHQL_VALIDATION_FAILED`.
pub async fn execute(
    schema: &LatchkeySchema,
    mut request: async_graphql::Request,
    auth: Authentication,
    allow_mutations: bool,
) -> Executed {
    let refused = |e: AppError| Executed {
        response: async_graphql::Response::from_errors(vec![server_error(e)]),
        request_error: true,
    };
    if let Err(too_large) = check_size(&request.query) {
        return refused(too_large);
    }
    if request.parsed_query().is_err() {
        let mut response = schema.execute(request).await;
        mark_uncoded(&mut response);
        return Executed { response, request_error: true };
    }
    if let Err(e) = check_operation(&mut request, &auth, allow_mutations) {
        return refused(e);
    }
    let mut response = schema.execute(request.data(auth)).await;
    let uncoded = mark_uncoded(&mut response);
    let request_error = response.data == async_graphql::Value::Null && !response.errors.is_empty() && uncoded;
    Executed { response, request_error }
}

/// Gives every error without a code of ours `GRAPHQL_VALIDATION_FAILED`;
/// whether every error was such.
fn mark_uncoded(response: &mut async_graphql::Response) -> bool {
    let mut all = true;
    for error in &mut response.errors {
        let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
        if !has_code {
            error.extensions.get_or_insert_with(Default::default).set("code", "GRAPHQL_VALIDATION_FAILED");
        }
        all &= !has_code;
    }
    all
}

/// Refuses a document over [`MAX_DOCUMENT_BYTES`] or [`MAX_DOCUMENT_TOKENS`]
/// without parsing it (one pass over the bytes).
fn check_size(query: &str) -> Result<(), AppError> {
    if query.len() > MAX_DOCUMENT_BYTES {
        return Err(AppError::BadUserInput(format!(
            "The GraphQL document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted.",
            query.len()
        )));
    }
    if count_tokens(query, MAX_DOCUMENT_TOKENS + 1) > MAX_DOCUMENT_TOKENS {
        return Err(AppError::BadUserInput(format!(
            "The GraphQL document has more than {MAX_DOCUMENT_TOKENS} tokens; split it or send fewer fields."
        )));
    }
    Ok(())
}

/// The lexical tokens of a GraphQL document (names, numbers, strings and
/// punctuators; comments, commas and white space are not tokens), counted
/// up to `stop`.
fn count_tokens(query: &str, stop: usize) -> usize {
    let bytes = query.as_bytes();
    let (mut i, mut tokens) = (0, 0);
    while i < bytes.len() && tokens < stop {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                tokens += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'-')) {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

/// Refusals decided from the document alone, before any work: mutations over
/// GET, too many mutation fields in one operation, and anonymous callers
/// introspecting more than once per request (one `__schema` or `__type` is
/// what GraphiQL needs) or selecting more than [`MAX_ANONYMOUS_FIELDS`].
fn check_operation(
    request: &mut async_graphql::Request,
    auth: &Authentication,
    allow_mutations: bool,
) -> Result<(), AppError> {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return Ok(()); // the executor reports the parse error
    };
    let operations: Vec<&async_graphql::parser::types::OperationDefinition> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node],
        DocumentOperations::Multiple(ops) => match &operation_name {
            Some(name) => ops.get(name.as_str()).map(|op| &op.node).into_iter().collect(),
            None => ops.values().map(|op| &op.node).collect(),
        },
    };
    for op in operations {
        let fields = |name: Option<&str>| top_level_fields(&op.selection_set.node, doc, name, 0);
        if op.ty == OperationType::Mutation {
            if !allow_mutations {
                return Err(AppError::BadUserInput("Mutations must be sent with POST.".into()));
            }
            if fields(None) > MAX_MUTATIONS_PER_OPERATION {
                return Err(AppError::BadUserInput(format!(
                    "At most {MAX_MUTATIONS_PER_OPERATION} mutations per request."
                )));
            }
        }
        if matches!(auth, Authentication::Anonymous)
            && (fields(Some("__schema")) + fields(Some("__type")) > 1 || fields(None) > MAX_ANONYMOUS_FIELDS)
        {
            return Err(AppError::BadUserInput(
                "Introspect the schema once per request, or sign in to introspect more.".into(),
            ));
        }
    }
    Ok(())
}

/// The fields (named `name`, or all) a selection set selects at its top
/// level, fragments included.
fn top_level_fields(
    set: &async_graphql::parser::types::SelectionSet,
    doc: &async_graphql::parser::types::ExecutableDocument,
    name: Option<&str>,
    depth: usize,
) -> usize {
    use async_graphql::parser::types::Selection;
    // Fragment cycles are refused by validation; this only stops the walk.
    if depth > MAX_QUERY_DEPTH {
        return 0;
    }
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => usize::from(name.is_none_or(|n| field.node.name.node == n)),
            Selection::FragmentSpread(spread) => doc
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |f| top_level_fields(&f.node.selection_set.node, doc, name, depth + 1)),
            Selection::InlineFragment(inline) => {
                top_level_fields(&inline.node.selection_set.node, doc, name, depth + 1)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_like_the_lexer_does() {
        assert_eq!(count_tokens("{ viewer { tenant { id } } }", 100), 9);
        assert_eq!(count_tokens("query($a: Int = -12) { f(s: \"a, \\\"b\\\" c\") } # many words here", 100), 17);
        assert_eq!(count_tokens(&"{ __typename }".repeat(1000), 50), 50, "counting stops early");
        assert!(check_size(&format!("{{ {} }}", "__typename ".repeat(4000))).is_err());
        assert!(check_size("{ viewer { tenant { id } } }").is_ok());
    }
}

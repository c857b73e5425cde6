//! Latchkey's GraphQL API: the schema, its own output types and the mapping
//! of application errors.
//!
//! Resolvers call only the application layer ([`latchkey_app::App`]): they
//! never see the store, and every key operation goes through
//! [`latchkey_app::App::key_admin`]'s permission check. The schema builds
//! without a database (see [`export_sdl`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod error;
mod mutation;
mod query;
mod types;

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

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
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

/// Executes one GraphQL request for an (already authenticated) caller.
///
/// `allow_mutations` is false for HTTP GET, so that a link cannot change
/// anything. Errors that carry no code of ours (parse and validation errors)
/// get `GRAPHQL_VALIDATION_FAILED`.
pub async fn execute(
    schema: &LatchkeySchema,
    request: async_graphql::Request,
    auth: Authentication,
    allow_mutations: bool,
) -> async_graphql::Response {
    if let Err(refused) = check_operation(&request, &auth, allow_mutations) {
        return async_graphql::Response::from_errors(vec![server_error(refused)]);
    }
    let mut response = schema.execute(request.data(auth)).await;
    for error in &mut response.errors {
        let has_code = error.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
        if !has_code {
            error.extensions.get_or_insert_with(Default::default).set("code", "GRAPHQL_VALIDATION_FAILED");
        }
    }
    response
}

/// Refusals decided from the document alone, before any work: mutations over
/// GET, too many mutation fields in one operation, and aliased introspection
/// by anonymous callers (one `__schema` per request is what GraphiQL needs).
fn check_operation(
    request: &async_graphql::Request,
    auth: &Authentication,
    allow_mutations: bool,
) -> Result<(), AppError> {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return Ok(()); // the executor reports the parse error
    };
    let operations: Vec<&async_graphql::parser::types::OperationDefinition> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node],
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()).map(|op| &op.node).into_iter().collect(),
            None => ops.values().map(|op| &op.node).collect(),
        },
    };
    for op in operations {
        let fields = |name: Option<&str>| top_level_fields(&op.selection_set.node, &doc, name, 0);
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
        if matches!(auth, Authentication::Anonymous) && fields(Some("__schema")) > 1 {
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

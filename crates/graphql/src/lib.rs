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
/// Most complex query accepted.
pub const MAX_QUERY_COMPLEXITY: usize = 5_000;

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
    if !allow_mutations && is_mutation(&request) {
        return async_graphql::Response::from_errors(vec![server_error(AppError::BadUserInput(
            "Mutations must be sent with POST.".into(),
        ))]);
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

fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false; // the executor reports the parse error
    };
    let is_mut = |ty: OperationType| ty == OperationType::Mutation;
    match &doc.operations {
        DocumentOperations::Single(op) => is_mut(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| is_mut(op.node.ty)),
            None => ops.values().any(|op| is_mut(op.node.ty)),
        },
    }
}

//! sea-orm entities. Private to this crate: callers get domain types.

pub mod tenant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub leak_response: String,
        pub external_id: Option<String>,
        pub scim_may_grant_internal_admin: bool,
        pub key_policy: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub email: String,
        pub name: String,
        pub role: String,
        pub created_at: DateTimeUtc,
        pub deactivated_at: Option<DateTimeUtc>,
        pub external_id: Option<String>,
        pub given_name: Option<String>,
        pub family_name: Option<String>,
        pub updated_at: Option<DateTimeUtc>,
        pub version: i32,
        pub deleted_at: Option<DateTimeUtc>,
        pub scim_managed: bool,
        pub user_name: Option<String>,
        pub user_name_folded: Option<String>,
        pub rate_limits: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod key_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub kind: String,
        pub key_id: Uuid,
        pub key_description: String,
        pub key_last_four: String,
        pub owner_id: Uuid,
        pub owner_email: String,
        pub owner_name: String,
        pub actor_id: Uuid,
        pub actor_name: String,
        pub occurred_at: DateTimeUtc,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub locked_until: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub sent_at: Option<DateTimeUtc>,
        pub key_expires_at: Option<DateTimeUtc>,
        pub previous_secret_expires_at: Option<DateTimeUtc>,
        pub restrictions_before: Option<String>,
        pub restrictions_after: Option<String>,
        pub leak_source: Option<String>,
        pub leak_url: Option<String>,
        pub leak_revoked: Option<bool>,
        pub owner_before: Option<String>,
        pub owner_after: Option<String>,
        pub suspended_user_id: Option<Uuid>,
        pub suspended_user_name: Option<String>,
        pub suspended_keys: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod key_audit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_audit")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub key_id: Uuid,
        pub action: String,
        pub actor_id: Uuid,
        pub actor_name: String,
        pub occurred_at: DateTimeUtc,
        pub key_description: String,
        pub key_last_four: String,
        /// The domain's `AuditChange`, as JSON.
        pub details: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod leak_report {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "leak_reports")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub key_id: Uuid,
        pub token_digest: String,
        pub source: String,
        pub url: Option<String>,
        pub reported_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod imported_credential {
    use sea_orm::entity::prelude::*;

    /// Every credential an import wrote, kept after its key is rotated or deleted.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "imported_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub lookup: String,
        pub tenant_id: Uuid,
        pub key_id: Uuid,
        pub imported_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod rate_limit_window {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "rate_limit_windows")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period_seconds: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub window_start: i64,
        pub leased: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook_endpoint {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_endpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub url: String,
        pub description: String,
        pub event_types: String,
        pub enabled: bool,
        pub secret: String,
        pub previous_secret: Option<String>,
        pub previous_secret_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub failing_since: Option<DateTimeUtc>,
        pub disabled_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook_delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub endpoint_id: Uuid,
        pub event_id: Uuid,
        pub event_type: String,
        pub payload: String,
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub locked_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub finished_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook_attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub delivery_id: Uuid,
        pub attempted_at: DateTimeUtc,
        pub http_status: Option<i32>,
        pub duration_ms: i64,
        pub response_body: String,
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

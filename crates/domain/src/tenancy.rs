//! What a tenant is made of: its two clouds and the roles of its users.

crate::string_enum! {
    /// The two clouds of a tenant.
    pub enum Cloud {
        /// The company's own staff.
        Employee = "employee",
        /// The academies of the company's customers.
        Customer = "customer",
    }
}

crate::string_enum! {
    /// A user's role within its tenant (stored and written on the command line by these names).
    pub enum Role {
        /// Administrator of the employee cloud; manages API keys.
        InternalAdmin = "internal-admin",
        /// Administrator of the customer cloud (academies).
        AcademyAdmin = "academy-admin",
        /// A service account that owns keys for an integration.
        IntegrationUser = "integration-user",
    }
}

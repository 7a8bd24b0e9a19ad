//! Roles and permissions: a pure table, no I/O. The seed's permission strings
//! (`pppoe:add_user`, `pppoe:edit`, `pppoe:delete`, `finance:income_create`) plus ours.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an operator may do. The string form is what the API shows and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    CustomersView,
    CustomersAdd,
    CustomersEdit,
    CustomersDelete,
    CustomersAnonymize,
    FinanceView,
    FinanceIncomeCreate,
    PackagesView,
    PackagesManage,
    RoutersView,
    RoutersManage,
    OperatorsManage,
    AuditView,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::CustomersView,
        Permission::CustomersAdd,
        Permission::CustomersEdit,
        Permission::CustomersDelete,
        Permission::CustomersAnonymize,
        Permission::FinanceView,
        Permission::FinanceIncomeCreate,
        Permission::PackagesView,
        Permission::PackagesManage,
        Permission::RoutersView,
        Permission::RoutersManage,
        Permission::OperatorsManage,
        Permission::AuditView,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CustomersView => "customers:view",
            Permission::CustomersAdd => "pppoe:add_user",
            Permission::CustomersEdit => "pppoe:edit",
            Permission::CustomersDelete => "pppoe:delete",
            Permission::CustomersAnonymize => "customers:anonymize",
            Permission::FinanceView => "finance:view",
            Permission::FinanceIncomeCreate => "finance:income_create",
            Permission::PackagesView => "packages:view",
            Permission::PackagesManage => "packages:manage",
            Permission::RoutersView => "routers:view",
            Permission::RoutersManage => "routers:manage",
            Permission::OperatorsManage => "operators:manage",
            Permission::AuditView => "audit:view",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in roles.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Customers and routers, no money.
    Technician,
    /// Read access plus `finance:income_create`.
    Cashier,
    /// Read-only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Cashier => "cashier",
            Role::Viewer => "viewer",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Technician => matches!(
                permission,
                CustomersView
                    | CustomersAdd
                    | CustomersEdit
                    | CustomersDelete
                    | PackagesView
                    | RoutersView
                    | RoutersManage
                    | AuditView
            ),
            Role::Cashier => matches!(
                permission,
                CustomersView
                    | FinanceView
                    | FinanceIncomeCreate
                    | PackagesView
                    | RoutersView
                    | AuditView
            ),
            Role::Viewer => {
                matches!(
                    permission,
                    CustomersView | FinanceView | PackagesView | RoutersView | AuditView
                )
            }
        }
    }

    pub fn permissions(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .map(Permission::as_str)
            .collect()
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "technician" => Ok(Role::Technician),
            "cashier" => Ok(Role::Cashier),
            "viewer" => Ok(Role::Viewer),
            _ => Err("must be one of admin, technician, cashier, viewer".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technician_handles_customers_and_routers_but_no_money() {
        assert!(Role::Technician.allows(Permission::CustomersAdd));
        assert!(Role::Technician.allows(Permission::RoutersManage));
        assert!(!Role::Technician.allows(Permission::FinanceIncomeCreate));
        assert!(!Role::Technician.allows(Permission::FinanceView));
    }

    #[test]
    fn cashier_reads_and_takes_money_only() {
        assert!(Role::Cashier.allows(Permission::FinanceIncomeCreate));
        assert!(!Role::Cashier.allows(Permission::CustomersEdit));
        assert!(!Role::Viewer.allows(Permission::FinanceIncomeCreate));
        assert!(Role::Admin.permissions().contains(&"pppoe:delete"));
    }
}

//! Static description of every menu the simulator models (routeros.md §4): fields, defaults,
//! value kinds, which commands exist, uniqueness keys and their exact duplicate error texts.
//! Adding a menu or a field is a change to this table only.

/// How a field's input is validated and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text, raw bytes.
    Str,
    /// `yes/no/true/false` in, stored `true`/`false`.
    Bool,
    /// Status flag printed only when true (`dynamic`, `running` on some menus).
    Flag,
    /// Unsigned decimal.
    Int,
    /// Duration, normalised to `1h2m3s`.
    Time,
    /// routeros.md §5 rate limit.
    RateLimit,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// Name of a row in another menu (prefix completion, ambiguity error).
    Ref(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// Value set on `add` when the caller gives none; `None` = absent until set.
    pub default: Option<&'static str>,
    pub kind: Kind,
    /// Read-only fields are printed but refused as arguments (`unknown parameter`).
    pub read_only: bool,
}

const fn f(name: &'static str, default: &'static str, kind: Kind) -> Field {
    Field {
        name,
        default: Some(default),
        kind,
        read_only: false,
    }
}
const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        default: None,
        kind,
        read_only: false,
    }
}
const fn ro(name: &'static str, default: &'static str, kind: Kind) -> Field {
    Field {
        name,
        default: Some(default),
        kind,
        read_only: true,
    }
}
const fn ro_opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        default: None,
        kind,
        read_only: true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuKind {
    /// Ordinary list with add/set/remove.
    List,
    /// Live sessions: print and remove only; rows are made by the simulator.
    Sessions,
    /// Dynamic rows made by the simulator plus static ones (`/interface`): no add/remove.
    Interfaces,
    /// One object, printed bare (`/system/identity`).
    Singleton,
}

#[derive(Debug)]
pub struct Menu {
    /// Path without leading slash, `/`-separated: `ppp/secret`.
    pub path: &'static str,
    pub kind: MenuKind,
    pub fields: &'static [Field],
    /// Fields whose combined values must be unique among rows.
    pub unique: &'static [&'static str],
    /// Error text when `unique` is violated.
    pub duplicate_error: &'static str,
    /// Field required on `add`.
    pub required: &'static [&'static str],
    /// Rows can be addressed by `name` instead of `.id`.
    pub named: bool,
    /// First `.id` of this menu (dynamic menus count from `0x80000000`-ish values).
    pub id_base: u32,
    /// Commands besides print/getall (which every menu has).
    pub commands: &'static [&'static str],
}

impl Menu {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    pub fn has_command(&self, cmd: &str) -> bool {
        matches!(cmd, "print" | "getall") || self.commands.contains(&cmd)
    }
}

const LIST_CMDS: &[&str] = &[
    "add", "set", "remove", "enable", "disable", "unset", "comment",
];
const SERVICES: &[&str] = &[
    "any", "async", "isdn", "l2tp", "pppoe", "pptp", "ovpn", "sstp",
];
const YND: &[&str] = &["yes", "no", "default"];

pub static MENUS: &[Menu] = &[
    Menu {
        path: "ppp/secret",
        kind: MenuKind::List,
        fields: &[
            f("name", "", Kind::Str),
            f("password", "", Kind::Str),
            f("service", "any", Kind::Enum(SERVICES)),
            f("profile", "default", Kind::Ref("ppp/profile")),
            f("caller-id", "", Kind::Str),
            f("local-address", "", Kind::Str),
            f("remote-address", "", Kind::Str),
            f("routes", "", Kind::Str),
            f("remote-ipv6-prefix", "", Kind::Str),
            f("ipv6-routes", "", Kind::Str),
            f("limit-bytes-in", "0", Kind::Int),
            f("limit-bytes-out", "0", Kind::Int),
            ro_opt("last-logged-out", Kind::Str),
            ro_opt("last-caller-id", Kind::Str),
            ro_opt("last-disconnect-reason", Kind::Str),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &["name"],
        duplicate_error: "failure: secret with the same name already exists",
        required: &["name"],
        named: true,
        id_base: 1,
        commands: LIST_CMDS,
    },
    Menu {
        path: "ppp/profile",
        kind: MenuKind::List,
        fields: &[
            f("name", "", Kind::Str),
            f("local-address", "", Kind::Str),
            f("remote-address", "", Kind::Str),
            f("dns-server", "", Kind::Str),
            f("rate-limit", "", Kind::RateLimit),
            f("only-one", "default", Kind::Enum(YND)),
            f("session-timeout", "", Kind::Str),
            f("idle-timeout", "", Kind::Str),
            f("address-list", "", Kind::Str),
            f("parent-queue", "", Kind::Str),
            f("queue-type", "", Kind::Str),
            f("on-up", "", Kind::Str),
            f("on-down", "", Kind::Str),
            f("change-tcp-mss", "default", Kind::Enum(YND)),
            f(
                "use-encryption",
                "default",
                Kind::Enum(&["yes", "no", "default", "required"]),
            ),
            f("use-compression", "default", Kind::Enum(YND)),
            f(
                "use-ipv6",
                "yes",
                Kind::Enum(&["yes", "no", "default", "required"]),
            ),
            f(
                "use-mpls",
                "default",
                Kind::Enum(&["yes", "no", "default", "required"]),
            ),
            f("use-upnp", "default", Kind::Enum(YND)),
            ro_opt("default", Kind::Flag),
            opt("comment", Kind::Str),
        ],
        unique: &["name"],
        duplicate_error: "failure: profile with the same name already exists",
        required: &["name"],
        named: true,
        id_base: 0,
        commands: LIST_CMDS,
    },
    Menu {
        path: "ppp/active",
        kind: MenuKind::Sessions,
        fields: &[
            ro("name", "", Kind::Str),
            ro("service", "pppoe", Kind::Str),
            ro("caller-id", "", Kind::Str),
            ro("address", "", Kind::Str),
            ro("uptime", "0s", Kind::Time),
            ro("encoding", "", Kind::Str),
            ro("session-id", "", Kind::Str),
            ro("limit-bytes-in", "0", Kind::Int),
            ro("limit-bytes-out", "0", Kind::Int),
            ro("radius", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 0x8000_0001,
        commands: &["remove"],
    },
    Menu {
        path: "interface",
        kind: MenuKind::Interfaces,
        fields: &[
            ro("name", "", Kind::Str),
            ro("default-name", "", Kind::Str),
            ro("type", "ether", Kind::Str),
            ro("mtu", "1500", Kind::Str),
            ro("actual-mtu", "1500", Kind::Str),
            ro("mac-address", "", Kind::Str),
            ro("last-link-up-time", "", Kind::Str),
            ro("link-downs", "0", Kind::Int),
            ro("rx-byte", "0", Kind::Int),
            ro("tx-byte", "0", Kind::Int),
            ro("rx-packet", "0", Kind::Int),
            ro("tx-packet", "0", Kind::Int),
            ro("rx-drop", "0", Kind::Int),
            ro("tx-drop", "0", Kind::Int),
            ro("tx-queue-drop", "0", Kind::Int),
            ro("rx-error", "0", Kind::Int),
            ro("tx-error", "0", Kind::Int),
            ro("fp-rx-byte", "0", Kind::Int),
            ro("fp-tx-byte", "0", Kind::Int),
            ro("fp-rx-packet", "0", Kind::Int),
            ro("fp-tx-packet", "0", Kind::Int),
            ro_opt("dynamic", Kind::Flag),
            ro("running", "true", Kind::Bool),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &["name"],
        duplicate_error: "failure: interface with such name exists",
        required: &[],
        named: true,
        id_base: 1,
        commands: &["set", "enable", "disable", "reset-counters", "comment"],
    },
    Menu {
        path: "ip/hotspot/user",
        kind: MenuKind::List,
        fields: &[
            f("server", "all", Kind::Str),
            f("name", "", Kind::Str),
            f("password", "", Kind::Str),
            f("profile", "default", Kind::Ref("ip/hotspot/user/profile")),
            f("mac-address", "00:00:00:00:00:00", Kind::Str),
            opt("address", Kind::Str),
            opt("email", Kind::Str),
            opt("routes", Kind::Str),
            f("limit-uptime", "0s", Kind::Time),
            f("limit-bytes-in", "0", Kind::Int),
            f("limit-bytes-out", "0", Kind::Int),
            f("limit-bytes-total", "0", Kind::Int),
            ro("uptime", "0s", Kind::Time),
            ro("bytes-in", "0", Kind::Int),
            ro("bytes-out", "0", Kind::Int),
            ro("packets-in", "0", Kind::Int),
            ro("packets-out", "0", Kind::Int),
            ro_opt("dynamic", Kind::Flag),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &["name", "server"],
        duplicate_error: "failure: already have user with this name for this server",
        required: &["name"],
        named: true,
        id_base: 1,
        commands: &[
            "add",
            "set",
            "remove",
            "enable",
            "disable",
            "unset",
            "comment",
            "reset-counters",
        ],
    },
    Menu {
        path: "ip/hotspot/user/profile",
        kind: MenuKind::List,
        fields: &[
            f("name", "", Kind::Str),
            opt("address-pool", Kind::Str),
            f("rate-limit", "", Kind::RateLimit),
            f("shared-users", "1", Kind::Str),
            f("session-timeout", "0s", Kind::Time),
            f("idle-timeout", "none", Kind::Str),
            f("keepalive-timeout", "2m", Kind::Time),
            f("status-autorefresh", "1m", Kind::Time),
            f("mac-cookie-timeout", "3d", Kind::Time),
            f("add-mac-cookie", "true", Kind::Bool),
            f("address-list", "", Kind::Str),
            f("on-login", "", Kind::Str),
            f("on-logout", "", Kind::Str),
            f("transparent-proxy", "false", Kind::Bool),
            f(
                "open-status-page",
                "always",
                Kind::Enum(&["always", "http-login"]),
            ),
            ro_opt("default", Kind::Flag),
            opt("comment", Kind::Str),
        ],
        unique: &["name"],
        duplicate_error: "failure: profile with the same name already exists",
        required: &["name"],
        named: true,
        id_base: 0,
        commands: LIST_CMDS,
    },
    Menu {
        path: "ip/hotspot/active",
        kind: MenuKind::Sessions,
        fields: &[
            ro("server", "hotspot1", Kind::Str),
            ro("user", "", Kind::Str),
            ro("domain", "", Kind::Str),
            ro("address", "", Kind::Str),
            ro("mac-address", "", Kind::Str),
            ro("login-by", "http-chap", Kind::Str),
            ro("uptime", "0s", Kind::Time),
            ro("idle-time", "0s", Kind::Time),
            ro_opt("session-time-left", Kind::Time),
            ro("idle-timeout", "", Kind::Str),
            ro("keepalive-timeout", "2m", Kind::Time),
            ro_opt("limit-bytes-in", Kind::Int),
            ro_opt("limit-bytes-out", Kind::Int),
            ro_opt("limit-bytes-total", Kind::Int),
            ro("bytes-in", "0", Kind::Int),
            ro("bytes-out", "0", Kind::Int),
            ro("packets-in", "0", Kind::Int),
            ro("packets-out", "0", Kind::Int),
            ro("radius", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 1,
        commands: &["remove"],
    },
    Menu {
        path: "ip/hotspot/cookie",
        kind: MenuKind::Sessions,
        fields: &[
            ro("user", "", Kind::Str),
            ro("domain", "", Kind::Str),
            ro("mac-address", "", Kind::Str),
            ro("expires-in", "3d", Kind::Time),
        ],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 1,
        commands: &["remove"],
    },
    Menu {
        path: "queue/simple",
        kind: MenuKind::List,
        fields: &[
            f("name", "", Kind::Str),
            f("target", "", Kind::Str),
            f("dst", "", Kind::Str),
            f("parent", "none", Kind::Str),
            f("priority", "8/8", Kind::Str),
            f("queue", "default-small/default-small", Kind::Str),
            f("limit-at", "0/0", Kind::Str),
            f("max-limit", "0/0", Kind::Str),
            f("burst-limit", "0/0", Kind::Str),
            f("burst-threshold", "0/0", Kind::Str),
            f("burst-time", "0s/0s", Kind::Str),
            f("bucket-size", "0.1/0.1", Kind::Str),
            ro("rate", "0/0", Kind::Str),
            ro("packet-rate", "0/0", Kind::Str),
            ro("bytes", "0/0", Kind::Str),
            ro("packets", "0/0", Kind::Str),
            ro("queued-bytes", "0/0", Kind::Str),
            ro("queued-packets", "0/0", Kind::Str),
            ro("dropped", "0/0", Kind::Str),
            ro_opt("dynamic", Kind::Flag),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &["name"],
        duplicate_error: "failure: queue with such name already exists",
        required: &["target"],
        named: true,
        id_base: 1,
        commands: &[
            "add",
            "set",
            "remove",
            "enable",
            "disable",
            "unset",
            "comment",
            "reset-counters",
        ],
    },
    Menu {
        path: "ip/dhcp-server/lease",
        kind: MenuKind::List,
        fields: &[
            f("address", "", Kind::Str),
            f("mac-address", "", Kind::Str),
            opt("client-id", Kind::Str),
            f("server", "all", Kind::Str),
            f("lease-time", "0s", Kind::Time),
            f("block-access", "false", Kind::Bool),
            opt("address-lists", Kind::Str),
            opt("rate-limit", Kind::RateLimit),
            opt("insert-queue-before", Kind::Str),
            opt("parent-queue", Kind::Str),
            opt("queue-type", Kind::Str),
            ro("status", "waiting", Kind::Str),
            ro_opt("active-address", Kind::Str),
            ro_opt("active-mac-address", Kind::Str),
            ro_opt("host-name", Kind::Str),
            ro_opt("expires-after", Kind::Str),
            ro("last-seen", "never", Kind::Str),
            ro_opt("dynamic", Kind::Flag),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &[],
        duplicate_error: "",
        required: &["address"],
        named: false,
        id_base: 1,
        commands: &[
            "add",
            "set",
            "remove",
            "enable",
            "disable",
            "unset",
            "comment",
            "make-static",
        ],
    },
    Menu {
        path: "ip/firewall/address-list",
        kind: MenuKind::List,
        fields: &[
            f("list", "", Kind::Str),
            f("address", "", Kind::Str),
            opt("timeout", Kind::Time),
            ro("creation-time", "", Kind::Str),
            ro_opt("dynamic", Kind::Flag),
            f("disabled", "false", Kind::Bool),
            opt("comment", Kind::Str),
        ],
        unique: &["list", "address"],
        duplicate_error: "failure: already have such entry",
        required: &["list", "address"],
        named: false,
        id_base: 1,
        commands: LIST_CMDS,
    },
    Menu {
        path: "system/identity",
        kind: MenuKind::Singleton,
        fields: &[f("name", "MikroTik", Kind::Str)],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 0,
        commands: &["set"],
    },
    Menu {
        path: "system/resource",
        kind: MenuKind::Singleton,
        fields: &[
            ro("uptime", "0s", Kind::Time),
            ro("version", "", Kind::Str),
            ro("build-time", "", Kind::Str),
            ro("factory-software", "", Kind::Str),
            ro("free-memory", "", Kind::Int),
            ro("total-memory", "", Kind::Int),
            ro("cpu", "", Kind::Str),
            ro("cpu-count", "", Kind::Int),
            ro("cpu-frequency", "", Kind::Int),
            ro("cpu-load", "", Kind::Int),
            ro("free-hdd-space", "", Kind::Int),
            ro("total-hdd-space", "", Kind::Int),
            ro("architecture-name", "", Kind::Str),
            ro("board-name", "", Kind::Str),
            ro("platform", "MikroTik", Kind::Str),
        ],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 0,
        commands: &[],
    },
    Menu {
        path: "system/clock",
        kind: MenuKind::Singleton,
        fields: &[
            ro("time", "", Kind::Str),
            ro("date", "", Kind::Str),
            f("time-zone-autodetect", "true", Kind::Bool),
            f("time-zone-name", "UTC", Kind::Str),
            ro("gmt-offset", "+00:00", Kind::Str),
            ro("dst-active", "false", Kind::Bool),
        ],
        unique: &[],
        duplicate_error: "",
        required: &[],
        named: false,
        id_base: 0,
        commands: &["set"],
    },
];

/// Finds a menu by path (`ppp/secret`, no leading slash).
pub fn menu(path: &str) -> Option<&'static Menu> {
    MENUS.iter().find(|m| m.path == path)
}

/// Every path prefix that is a directory but not itself a menu (`ppp`, `ip/hotspot`); used to
/// tell "no such command" from "no such command or directory".
pub fn is_directory(path: &str) -> bool {
    MENUS.iter().any(|m| {
        m.path.len() > path.len()
            && m.path.starts_with(path)
            && m.path.as_bytes()[path.len()] == b'/'
    })
}

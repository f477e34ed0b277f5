//! `-l/--linkerd-namespace`, which every command takes the same way.

use clap::Args;

/// The control plane's namespace (also `LINKERD_NAMESPACE`).
#[derive(Args, Clone, Debug)]
pub struct NamespaceArg {
    /// Namespace of the control plane (kinject's or a running Linkerd's).
    #[arg(
        short = 'l',
        long = "linkerd-namespace",
        env = "LINKERD_NAMESPACE",
        default_value = "linkerd",
        value_name = "NAMESPACE"
    )]
    pub name: String,
}

//! The init containers: `linkerd-init` (iptables mode) and
//! `linkerd-network-validator` (CNI mode).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::{
    Capability, Container, INIT_CONTAINER, InitCapabilities, InitSecurityContext, Mount, PodFacts,
    RUNTIME_DEFAULT, SecurityContext, VALIDATOR_CONTAINER, init_image, non_empty, pull_policy,
    resources,
};
use kinject_mesh::values::Values;

type Str<'a> = Cow<'a, str>;

/// The `linkerd-init` container (iptables mode).
pub fn init_container<'a>(v: &'a Values, facts: &'a PodFacts<'a>) -> Container<'a> {
    let p = &v.proxy;
    let pi = &v.proxy_init;
    let mut args: Vec<Str<'a>> = Vec::with_capacity(24);
    if pi.iptables_mode == "nft" {
        args.extend(
            [
                "--firewall-bin-path",
                "iptables-nft",
                "--firewall-save-bin-path",
                "iptables-nft-save",
            ]
            .map(Str::from),
        );
    }
    if v.disable_ipv6 {
        args.push("--ipv6=false".into());
    }
    args.push("--incoming-proxy-port".into());
    args.push(p.ports.inbound.to_string().into());
    args.push("--outgoing-proxy-port".into());
    args.push(p.ports.outbound.to_string().into());
    args.push("--proxy-uid".into());
    args.push(p.uid.to_string().into());
    if p.gid >= 0 {
        args.push("--proxy-gid".into());
        args.push(p.gid.to_string().into());
    }
    let mut inbound_ignore = format!("{},{}", p.ports.control, p.ports.admin);
    if !pi.ignore_inbound_ports.is_empty() {
        inbound_ignore.push(',');
        inbound_ignore.push_str(&pi.ignore_inbound_ports);
    }
    args.push("--inbound-ports-to-ignore".into());
    args.push(inbound_ignore.into());
    if let Some(ports) = non_empty(&pi.ignore_outbound_ports) {
        args.push("--outbound-ports-to-ignore".into());
        args.push(ports.into());
    }
    if pi.close_wait_timeout_secs > 0 {
        args.push("--timeout-close-wait-secs".into());
        args.push(pi.close_wait_timeout_secs.to_string().into());
    }
    if let Some(f) = non_empty(&pi.log_format) {
        args.push("--log-format".into());
        args.push(f.into());
    }
    if let Some(l) = non_empty(&pi.log_level) {
        args.push("--log-level".into());
        args.push(l.into());
    }
    if let Some(s) = non_empty(&pi.skip_subnets) {
        args.push("--subnets-to-ignore".into());
        args.push(s.into());
    }
    let privileged = pi.privileged || pi.close_wait_timeout_secs > 0;

    let app = facts.app_capabilities;
    let mut add = vec![Capability::Name("NET_ADMIN"), Capability::Name("NET_RAW")];
    if let Some(a) = app.and_then(|c| c.get("add")).and_then(Value::as_array) {
        add.extend(a.iter().map(Capability::Raw));
    }
    let drop = app
        .and_then(|c| c.get("drop"))
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter(|c| !matches!(c.as_str(), Some("NET_ADMIN" | "NET_RAW")))
                .collect()
        });
    let nz = |id: i64| if id == 0 { 65534 } else { id };
    let (run_as_non_root, run_as_user, run_as_group) = if pi.run_as_root {
        (false, 0, 0)
    } else {
        (true, nz(pi.run_as_user), nz(pi.run_as_group))
    };
    let mut mounts = vec![Mount::Mount {
        mount_path: &pi.xt_mount_path.mount_path,
        name: &pi.xt_mount_path.name,
    }];
    if let Some(m) = &facts.sa_mount {
        mounts.push(Mount::Raw(m));
    }
    Container {
        name: INIT_CONTAINER,
        image: init_image(v),
        image_pull_policy: pull_policy(&p.image.pull_policy, v),
        command: Some(["/usr/lib/linkerd/linkerd2-proxy-init"]),
        args,
        env: Vec::new(),
        ports: Vec::new(),
        liveness_probe: None,
        readiness_probe: None,
        startup_probe: None,
        resources: resources(&p.resources),
        restart_policy: None,
        security_context: SecurityContext::Init(InitSecurityContext {
            allow_privilege_escalation: privileged,
            capabilities: InitCapabilities { add, drop },
            privileged,
            run_as_non_root,
            run_as_user,
            run_as_group,
            read_only_root_filesystem: true,
            seccomp_profile: RUNTIME_DEFAULT,
        }),
        termination_message_policy: "FallbackToLogsOnError",
        lifecycle: None,
        volume_mounts: mounts,
    }
}

/// The `linkerd-network-validator` init container (CNI mode).
pub fn network_validator(v: &Values) -> Value {
    let nv = &v.network_validator;
    let outbound = v.proxy.ports.outbound;
    let connect = if !nv.connect_addr.is_empty() {
        nv.connect_addr.clone()
    } else if v.disable_ipv6 {
        "1.1.1.1:20001".into()
    } else {
        "[fd00::1]:20001".into()
    };
    let listen = if !nv.listen_addr.is_empty() {
        nv.listen_addr.clone()
    } else if v.disable_ipv6 {
        format!("0.0.0.0:{outbound}")
    } else {
        format!("[::]:{outbound}")
    };
    let mut c = Map::new();
    c.insert("name".into(), VALIDATOR_CONTAINER.into());
    c.insert("image".into(), init_image(v).into());
    c.insert(
        "imagePullPolicy".into(),
        pull_policy(&v.proxy.image.pull_policy, v).into(),
    );
    c.insert(
        "command".into(),
        json!(["/usr/lib/linkerd/linkerd2-network-validator"]),
    );
    c.insert(
        "args".into(),
        json!([
            "--log-format",
            nv.log_format,
            "--log-level",
            nv.log_level,
            "--connect-addr",
            connect,
            "--listen-addr",
            listen,
            "--timeout",
            nv.timeout,
        ]),
    );
    c.insert("resources".into(), resources(&v.proxy.resources));
    if nv.enable_security_context {
        c.insert("securityContext".into(), nv.security_context.clone().into());
    }
    c.into()
}

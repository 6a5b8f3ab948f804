//! `org.pacsync.Daemon1` on the system bus.

use std::collections::HashMap;
use std::sync::Arc;

use pacsync_dbus::{
    DaemonError, HistoryEntry, OperationInfo, PlanCounts, PlanStepInfo, TargetInfo, actions,
};
use zbus::Connection;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use crate::daemon::{Daemon, Published};
use crate::operation::{self, Kind};

pub const CAPABILITIES: &[&str] = &["revert", "set-latest-comment", "preview-set-latest"];

#[derive(Debug)]
pub struct DaemonService {
    pub daemon: Arc<Daemon>,
}

/// Who called, for logs and history: `uid N`.
async fn caller(conn: &Connection, header: &Header<'_>) -> String {
    let Some(sender) = header.sender() else {
        return "unknown".into();
    };
    let uid = match zbus::fdo::DBusProxy::new(conn).await {
        Ok(proxy) => proxy
            .get_connection_unix_user(sender.clone().into())
            .await
            .ok(),
        Err(_) => None,
    };
    uid.map_or_else(|| "unknown".into(), |u| format!("uid {u}"))
}

/// Ask polkit whether the caller — not the daemon — may do `action`.
async fn authorize(
    conn: &Connection,
    header: &Header<'_>,
    action: &str,
) -> Result<String, DaemonError> {
    let who = caller(conn, header).await;
    let subject = Subject::new_for_message_header(header)
        .map_err(|e| DaemonError::Internal(format!("cannot identify the caller: {e}")))?;
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(|e| DaemonError::Internal(format!("polkit is not available: {e}")))?;
    let result = authority
        .check_authorization(
            &subject,
            action,
            &HashMap::new(),
            CheckAuthorizationFlags::AllowUserInteraction.into(),
            "",
        )
        .await
        .map_err(|e| DaemonError::Internal(format!("polkit failed: {e}")))?;
    if result.is_authorized {
        tracing::info!(caller = %who, action, "authorized");
        Ok(who)
    } else {
        tracing::warn!(caller = %who, action, "refused by polkit");
        Err(DaemonError::NotAuthorized(format!(
            "{who} is not allowed to {action}"
        )))
    }
}

fn steps(plan: &pacsync_core::plan::SyncPlan) -> Vec<PlanStepInfo> {
    plan.steps
        .iter()
        .map(|s| PlanStepInfo {
            package: s.name.clone(),
            action: s.action.as_str().to_owned(),
            installed: s
                .installed
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            target: s
                .target
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            set_reason: s
                .set_reason
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
        })
        .collect()
}

impl DaemonService {
    async fn published(&self) -> Published {
        self.daemon.inner.lock().await.published()
    }
}

#[zbus::interface(name = "org.pacsync.Daemon1")]
impl DaemonService {
    #[zbus(property(emits_changed_signal = "const"))]
    fn daemon_version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn capabilities(&self) -> Vec<String> {
        CAPABILITIES.iter().map(|s| (*s).to_owned()).collect()
    }

    #[zbus(property)]
    async fn status(&self) -> String {
        self.published().await.status
    }

    #[zbus(property)]
    async fn last_known_status(&self) -> String {
        self.published().await.last_known_status
    }

    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.published().await.last_error
    }

    #[zbus(property)]
    async fn pool(&self) -> String {
        self.published().await.pool
    }

    #[zbus(property)]
    async fn target(&self) -> TargetInfo {
        self.published().await.target
    }

    #[zbus(property)]
    async fn last_sync(&self) -> i64 {
        self.published().await.last_sync
    }

    #[zbus(property)]
    async fn last_report(&self) -> i64 {
        self.published().await.last_report
    }

    #[zbus(property)]
    async fn operation(&self) -> OperationInfo {
        self.published().await.operation
    }

    #[zbus(property)]
    async fn plan_summary(&self) -> PlanCounts {
        self.published().await.plan_summary
    }

    #[zbus(property)]
    async fn server_url(&self) -> String {
        self.published().await.server_url
    }

    #[zbus(property)]
    async fn machine_name(&self) -> String {
        self.published().await.machine_name
    }

    async fn preview(&self, kind: &str) -> Result<Vec<PlanStepInfo>, DaemonError> {
        let kind = Kind::parse(kind)?;
        let inner = self.daemon.inner.lock().await;
        operation::preview(&inner, kind).map(|p| steps(&p))
    }

    async fn sync(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, DaemonError> {
        let who = authorize(conn, &header, actions::SYNC).await?;
        operation::start(self.daemon.clone(), Kind::Sync, who, String::new(), None).await
    }

    async fn set_latest(
        &self,
        comment: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, DaemonError> {
        if comment.len() > 4000 {
            return Err(DaemonError::InvalidArgument(
                "comment longer than 4000 bytes".into(),
            ));
        }
        let who = authorize(conn, &header, actions::SET_LATEST).await?;
        operation::start(
            self.daemon.clone(),
            Kind::SetLatest,
            who,
            comment.to_owned(),
            None,
        )
        .await
    }

    async fn revert(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, DaemonError> {
        let who = authorize(conn, &header, actions::REVERT).await?;
        operation::start(self.daemon.clone(), Kind::Revert, who, String::new(), None).await
    }

    async fn cancel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), DaemonError> {
        let kind = self.daemon.inner.lock().await.operation.kind.clone();
        if kind.is_empty() {
            return Err(DaemonError::InvalidArgument(
                "no operation is running".into(),
            ));
        }
        authorize(conn, &header, Kind::parse(&kind)?.action()).await?;
        match self.daemon.cancel.lock().await.as_ref() {
            Some(flag) => {
                flag.cancel();
                Ok(())
            }
            None => Err(DaemonError::InvalidArgument(
                "no operation is running".into(),
            )),
        }
    }

    async fn refresh(&self) -> Result<(), DaemonError> {
        self.daemon.rescan().await;
        // Report now, so the caller sees the server's answer when this
        // returns; a failure is the offline status, and the reporter's
        // backoff takes over the retries.
        if let Err(e) = crate::reporter::report_once(&self.daemon).await {
            tracing::warn!("report failed: {e}");
            self.daemon.report_now.notify_one();
        }
        Ok(())
    }

    async fn register(
        &self,
        server_url: &str,
        enrollment_token: &str,
        machine_name: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), DaemonError> {
        authorize(conn, &header, actions::CONFIGURE).await?;
        operation::register(&self.daemon, server_url, enrollment_token, machine_name).await
    }

    async fn configure(
        &self,
        settings: HashMap<String, String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), DaemonError> {
        authorize(conn, &header, actions::CONFIGURE).await?;
        operation::configure(&self.daemon, settings).await
    }

    async fn history(&self, limit: u32) -> Vec<HistoryEntry> {
        let inner = self.daemon.inner.lock().await;
        inner
            .cache
            .history
            .iter()
            .take(limit as usize)
            .cloned()
            .collect()
    }

    #[zbus(signal)]
    pub async fn operation_progress(
        emitter: &SignalEmitter<'_>,
        operation_id: &str,
        phase: &str,
        percent: u32,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub async fn operation_finished(
        emitter: &SignalEmitter<'_>,
        operation_id: &str,
        kind: &str,
        outcome: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Emit `PropertiesChanged` for every property whose value moved.
pub async fn emit_changes(conn: &Connection, old: &Published, new: &Published) {
    let Ok(iface_ref) = conn
        .object_server()
        .interface::<_, DaemonService>(pacsync_dbus::OBJECT_PATH)
        .await
    else {
        return;
    };
    let iface = iface_ref.get().await;
    let ctxt = iface_ref.signal_emitter();
    let mut results = Vec::new();
    if old.status != new.status {
        results.push(iface.status_changed(ctxt).await);
    }
    if old.last_known_status != new.last_known_status {
        results.push(iface.last_known_status_changed(ctxt).await);
    }
    if old.last_error != new.last_error {
        results.push(iface.last_error_changed(ctxt).await);
    }
    if old.pool != new.pool {
        results.push(iface.pool_changed(ctxt).await);
    }
    if old.target != new.target {
        results.push(iface.target_changed(ctxt).await);
    }
    if old.last_sync != new.last_sync {
        results.push(iface.last_sync_changed(ctxt).await);
    }
    if old.last_report != new.last_report {
        results.push(iface.last_report_changed(ctxt).await);
    }
    if old.operation != new.operation {
        results.push(iface.operation_changed(ctxt).await);
    }
    if old.plan_summary != new.plan_summary {
        results.push(iface.plan_summary_changed(ctxt).await);
    }
    if old.server_url != new.server_url {
        results.push(iface.server_url_changed(ctxt).await);
    }
    if old.machine_name != new.machine_name {
        results.push(iface.machine_name_changed(ctxt).await);
    }
    for r in results {
        if let Err(e) = r {
            tracing::warn!("cannot emit a property change: {e}");
        }
    }
}

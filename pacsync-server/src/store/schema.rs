//! The tables of `migrations/{sqlite,postgres}`, written by hand so they
//! carry only types both backends share.

diesel::table! {
    users (id) {
        id -> Text,
        name -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    pools (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        keep_extras -> Bool,
        auto_sync -> Bool,
        offline_grace_secs -> BigInt,
        exclusions -> Text,
        current_target_id -> Nullable<Text>,
        target_seq -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        repo_overrides -> Text,
        analysis_excluded -> Text,
    }
}

diesel::table! {
    states (hash) {
        hash -> Text,
        package_count -> BigInt,
        content -> Binary,
        created_at -> BigInt,
        base -> Nullable<Text>,
    }
}

diesel::table! {
    target_contents (hash) {
        hash -> Text,
        package_count -> BigInt,
        content -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    pool_targets (id) {
        id -> Text,
        pool_id -> Text,
        seq -> BigInt,
        target_hash -> Text,
        kind -> Text,
        created_by -> Text,
        from_endpoint_id -> Nullable<Text>,
        from_endpoint_name -> Nullable<Text>,
        comment -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    endpoints (id) {
        id -> Text,
        name -> Text,
        pool_id -> Nullable<Text>,
        state_hash -> Nullable<Text>,
        status -> Text,
        last_error -> Nullable<Text>,
        last_seen_at -> Nullable<BigInt>,
        state_changed_at -> Nullable<BigInt>,
        session_gen -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    endpoint_states (id) {
        id -> Text,
        endpoint_id -> Text,
        state_hash -> Text,
        reported_at -> BigInt,
    }
}

diesel::table! {
    operations (id) {
        id -> Text,
        endpoint_id -> Text,
        kind -> Text,
        status -> Text,
        progress -> Integer,
        message -> Nullable<Text>,
        requested_by -> Text,
        target_hash -> Nullable<Text>,
        from_state_hash -> Nullable<Text>,
        created_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        subject -> Text,
        details -> Text,
    }
}

diesel::table! {
    enrollment_tokens (id) {
        id -> Text,
        token_hash -> Text,
        pool_id -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        uses -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        endpoint_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    repo_contents (hash) {
        hash -> Text,
        name -> Text,
        package_count -> BigInt,
        content -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    endpoint_repos (endpoint_id, position) {
        endpoint_id -> Text,
        position -> Integer,
        repo_hash -> Text,
        reported_at -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        name -> Text,
        token_hash -> Text,
        role -> Text,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    archive_files (sha256) {
        sha256 -> Text,
        name -> Text,
        version -> Text,
        arch -> Text,
        filename -> Text,
        size -> BigInt,
        pkginfo -> Text,
        signature -> Nullable<Binary>,
        source -> Text,
        created_at -> BigInt,
        damaged_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(endpoints -> pools (pool_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(endpoint_repos -> endpoints (endpoint_id));
diesel::joinable!(endpoint_repos -> repo_contents (repo_hash));
diesel::joinable!(pool_targets -> pools (pool_id));
diesel::joinable!(operations -> endpoints (endpoint_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    pools,
    states,
    target_contents,
    pool_targets,
    endpoints,
    endpoint_states,
    operations,
    audit_log,
    enrollment_tokens,
    refresh_tokens,
    repo_contents,
    endpoint_repos,
    api_tokens,
    archive_files,
    sessions,
);

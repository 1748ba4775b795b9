//! The embedded store on disk is private to the user running it: its directory is 0700, its
//! database file 0600 and its Unix socket 0600 whatever the umask (loose existing ones are
//! fixed); another uid cannot connect; `etcdctl` works over the socket as documented; and
//! background compaction bounds history while compacted watches still get
//! `compact_revision`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cirrus_store::embedded::{self, DB_FILE, EmbeddedConfig, EmbeddedError, Listen, SOCKET_FILE};
use etcd_client::{GetOptions, WatchOptions};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A directory with a loose (0755) store directory and a loose (0644) empty database file in
/// it, as an older version or a permissive umask would have left them.
fn loose_store_dir() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    // Traversable, so only the store directory's own mode stands between it and other users.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = root.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = store.join(DB_FILE);
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    (root, store)
}

/// `errno` of a permission error, as the probe prints it.
const EACCES: &str = "13";

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Try to connect to the Unix socket `path` as uid/gid `id` (perl is part of every Debian
/// system); `None` when perl is missing. Returns what the probe printed: `connected` or the
/// `connect(2)` errno ([`EACCES`]: permission denied).
fn probe_connect(path: &Path, id: Option<u32>) -> Option<String> {
    if !Path::new("/usr/bin/perl").exists() {
        return None;
    }
    let mut cmd = Command::new("/usr/bin/perl");
    cmd.args([
        "-MIO::Socket::UNIX",
        "-e",
        "if (IO::Socket::UNIX->new(Peer => $ARGV[0])) { print qq(connected\n) } \
         else { print 0 + $!, qq(\n) }",
    ])
    .arg(path)
    .current_dir("/")
    .stdin(Stdio::null());
    if let Some(id) = id {
        use std::os::unix::process::CommandExt;
        cmd.uid(id).gid(id);
    }
    let out = cmd.output().expect("run perl");
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_store_has_restrictive_modes_and_serves_on_its_socket() {
    let (_root, dir) = loose_store_dir();
    let server = embedded::start(EmbeddedConfig::private(&dir))
        .await
        .unwrap();
    let socket = dir.join(SOCKET_FILE);
    assert_eq!(mode(&dir), 0o700, "an existing loose store dir is fixed");
    assert_eq!(
        mode(&dir.join(DB_FILE)),
        0o600,
        "the database file is fixed"
    );
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(server.endpoint(), format!("unix://{}", socket.display()));
    assert_eq!(server.endpoints(), vec![server.endpoint()], "no TCP port");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with('~')),
        "no temporary socket left: {names:?}"
    );

    let mut c = cirrus_store::connect::connect(&[server.endpoint()], None)
        .await
        .unwrap();
    c.put("k", "v", None).await.unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    let members = c.member_list().await.unwrap();
    assert_eq!(
        members.members()[0].client_urls(),
        [server.endpoint()].as_slice()
    );
    // The plain etcd-client cannot dial it (why `cirrus_store::connect` exists).
    let plain = etcd_client::Client::connect([server.endpoint()], None).await;
    if let Ok(mut plain) = plain {
        assert!(plain.get("k", None).await.is_err());
    }

    // A second server on the same live socket is refused; the first keeps serving.
    let err = embedded::start(EmbeddedConfig {
        data_dir: None,
        ..EmbeddedConfig::private(&dir)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, EmbeddedError::SocketInUse(_)), "{err:?}");
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    drop(c);
    server.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed on shutdown");

    // A stale socket (its server gone without cleaning up) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = embedded::start(EmbeddedConfig::private(&dir))
        .await
        .unwrap();
    let mut c = cirrus_store::connect::connect(&[server.endpoint()], None)
        .await
        .unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    drop(c);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_socket_dir_is_created_private_and_tcp_is_opt_in() {
    let root = tempfile::tempdir().unwrap();
    let sock_dir = root.path().join("run/cirrus");
    let config = EmbeddedConfig {
        listen: Listen::Unix(sock_dir.join("s.sock")),
        extra_listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
        ..EmbeddedConfig::in_memory()
    };
    let server = embedded::start(config).await.unwrap();
    assert_eq!(mode(&sock_dir), 0o700);
    assert_eq!(mode(&sock_dir.join("s.sock")), 0o600);
    let endpoints = server.endpoints();
    assert_eq!(endpoints.len(), 2);
    assert!(
        endpoints[1].starts_with("http://127.0.0.1:"),
        "{endpoints:?}"
    );
    // Both listeners serve the same store.
    let mut unix = cirrus_store::connect::connect(&[&endpoints[0]], None)
        .await
        .unwrap();
    let mut tcp = cirrus_store::connect::connect(&[&endpoints[1]], None)
        .await
        .unwrap();
    unix.put("shared", "1", None).await.unwrap();
    assert_eq!(
        tcp.get("shared", None).await.unwrap().kvs()[0].value(),
        b"1"
    );
    drop((unix, tcp));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_connect_to_the_socket() {
    let (_root, dir) = loose_store_dir();
    let server = embedded::start(EmbeddedConfig::private(&dir))
        .await
        .unwrap();
    let socket = dir.join(SOCKET_FILE);
    // Whatever happens below, the modes are what keeps other users out.
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&socket), 0o600);
    if !running_as_root() {
        eprintln!("not root: cannot switch to another uid; checked the modes only");
    } else if let Some(me) = probe_connect(&socket, None) {
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        const NOBODY: Option<u32> = Some(65534);
        assert_eq!(me, "connected", "the owner can connect");
        assert_eq!(
            probe_connect(&socket, NOBODY).unwrap(),
            EACCES,
            "uid 65534 must not connect"
        );
        // Each of the two modes is enough on its own...
        set(&dir, 0o755);
        assert_eq!(
            probe_connect(&socket, NOBODY).unwrap(),
            EACCES,
            "the 0600 socket alone stops uid 65534"
        );
        set(&dir, 0o700);
        set(&socket, 0o777);
        assert_eq!(
            probe_connect(&socket, NOBODY).unwrap(),
            EACCES,
            "the 0700 directory alone stops uid 65534"
        );
        // ...and without both, the probe does connect as uid 65534 (it is a fair probe).
        set(&dir, 0o755);
        assert_eq!(probe_connect(&socket, NOBODY).unwrap(), "connected");
        set(&dir, 0o700);
        set(&socket, 0o600);
    } else {
        eprintln!("no /usr/bin/perl to probe with; checked the modes only");
    }
    server.shutdown().await;
}

/// What the README shows: etcdctl (3.4) over the socket, from the socket's directory with the
/// bare file name (grpc-go sends it as the HTTP/2 authority; an absolute path is not one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_over_the_socket() {
    let (_root, dir) = loose_store_dir();
    let server = embedded::start(EmbeddedConfig::private(&dir))
        .await
        .unwrap();
    let mut c = cirrus_store::connect::connect(&[server.endpoint()], None)
        .await
        .unwrap();
    c.put("/cirrus/flavors/m1.tiny", "{\"ram\":512}", None)
        .await
        .unwrap();
    let dir2 = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                "unix://etcd.sock",
                "--dial-timeout=5s",
                "get",
                "--prefix",
                "/cirrus/flavors",
                "--print-value-only",
            ])
            .current_dir(&dir2)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .expect("etcdctl is installed (Debian's etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"ram\":512}");
    drop(c);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_bounds_history() {
    let config = EmbeddedConfig {
        compaction_interval: Some(Duration::from_millis(50)),
        compaction_step: 7,
        ..EmbeddedConfig::in_memory()
    };
    let server = embedded::start(config).await.unwrap();
    let mut c = cirrus_store::connect::connect(&[server.endpoint()], None)
        .await
        .unwrap();
    let mut first = 0;
    for i in 0..200 {
        let r = c
            .put(format!("h/{}", i % 10), format!("{i}"), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        if i == 0 {
            first = r;
        }
    }
    let last = c
        .get("h/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // Two ticks later the compactor has compacted to (at least) what was current at the
    // first of them; wait for the effect (no speed is asserted).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let old = c
            .get("h/0", Some(GetOptions::new().with_revision(first)))
            .await;
        match old {
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::OutOfRange => break,
            Ok(_) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history below revision {first} was never compacted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A watch from a compacted revision is cancelled with the compact revision (what the
    // API turns into 410 Gone); the latest state is intact.
    let mut w = c
        .watch(
            "h/",
            Some(WatchOptions::new().with_prefix().with_start_revision(first)),
        )
        .await
        .unwrap();
    let resp = loop {
        let resp = tokio::time::timeout(Duration::from_secs(10), w.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if resp.canceled() {
            break resp;
        }
    };
    assert!(resp.compact_revision() > first, "{resp:?}");
    assert!(resp.compact_revision() <= last);
    let now = c
        .get("h/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(now.kvs().len(), 10);
    assert!(now.kvs().iter().any(|kv| kv.value() == b"199"));
    // Writes and reads at the current revision keep working.
    c.put("h/0", "after", None).await.unwrap();
    assert_eq!(c.get("h/0", None).await.unwrap().kvs()[0].value(), b"after");
    drop((c, w));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_compact_rpc_completes_before_replying() {
    let config = EmbeddedConfig {
        compaction_interval: None,
        compaction_step: 5,
        ..EmbeddedConfig::in_memory()
    };
    let server = embedded::start(config).await.unwrap();
    let mut c = cirrus_store::connect::connect(&[server.endpoint()], None)
        .await
        .unwrap();
    let mut rev = 0;
    for i in 0..100 {
        rev = c
            .put("p", format!("{i}"), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    c.compact(
        rev - 1,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    let err = c
        .get("p", Some(GetOptions::new().with_revision(rev - 2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange)
    );
    let at = c
        .get("p", Some(GetOptions::new().with_revision(rev - 1)))
        .await
        .unwrap();
    assert_eq!(at.kvs()[0].value(), b"98");
    drop(c);
    server.shutdown().await;
}

//! Loopback ports: a free one, waiting for a listener, an SSH banner.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that nothing listens on now (the kernel's pick, from
/// the ephemeral range).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until something accepts connections on 127.0.0.1:`port`; panics,
/// naming `what`, if `child` exits first or nothing listens within `timeout`.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on {port}");
        }
        sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
}

/// True when something on 127.0.0.1:`port` answers with an SSH banner.
pub fn ssh_banner(port: u16) -> bool {
    ssh_banner_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// True when something at `addr` answers with an SSH banner.
pub fn ssh_banner_at(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
}

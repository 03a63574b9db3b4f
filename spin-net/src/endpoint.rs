//! The frame queues between the guest's network device and the stack.
//!
//! The device side ([`FrameEndpoint`]) is used from any thread, synchronously:
//! the emulator's device calls [`FrameEndpoint::send_to_network`] for each
//! frame the guest transmits and [`FrameEndpoint::try_recv_from_network`] to
//! fill the guest's receive buffers. Both queues are bounded: frames from the
//! guest beyond the bound are dropped (as a NIC would); frames for the guest
//! stay in the stack (TCP holds them back) until the guest drains its queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

/// A callback run (on the stack's thread) when frames become available for the guest.
pub type Notifier = Arc<dyn Fn() + Send + Sync>;

/// Counters of the network, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_from_guest: AtomicU64,
    pub frames_to_guest: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub denied: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub udp_flows: AtomicU64,
    pub dns_queries: AtomicU64,
}

/// A snapshot of the network's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames accepted from the guest.
    pub frames_from_guest: u64,
    /// Frames handed to the guest's queue.
    pub frames_to_guest: u64,
    /// Frames dropped: malformed, oversized, unsupported or over a queue's bound.
    pub dropped_frames: u64,
    /// Connection attempts and datagrams refused by the policy.
    pub denied: u64,
    /// TCP connections held now (NAT, pending and forwarded).
    pub tcp_connections: u64,
    /// UDP flows held now.
    pub udp_flows: u64,
    /// DNS queries answered.
    pub dns_queries: u64,
}

pub(crate) struct Queue {
    frames: VecDeque<Vec<u8>>,
    pool: Vec<Vec<u8>>,
}

impl Queue {
    fn new() -> Self {
        Queue {
            frames: VecDeque::new(),
            pool: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// A cleared buffer from the pool.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b
    }

    pub fn recycle(&mut self, b: Vec<u8>) {
        if self.pool.len() < 64 && b.capacity() <= 70_000 {
            self.pool.push(b);
        }
    }

    pub fn push(&mut self, b: Vec<u8>) {
        self.frames.push_back(b);
    }

    pub fn pop(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }
}

/// State shared between the stack task and the device side.
pub(crate) struct Shared {
    pub to_net: Mutex<Queue>,
    pub to_guest: Mutex<Queue>,
    pub guest_cv: Condvar,
    pub notifier: Mutex<Option<Notifier>>,
    pub stack_waker: Mutex<Option<Waker>>,
    /// Set when the stack could not transmit because the guest queue was full.
    pub tx_blocked: AtomicBool,
    pub closed: AtomicBool,
    pub capacity: usize,
    pub max_frame: usize,
    pub counters: Counters,
}

impl Shared {
    pub fn new(capacity: usize, max_frame: usize) -> Arc<Self> {
        Arc::new(Shared {
            to_net: Mutex::new(Queue::new()),
            to_guest: Mutex::new(Queue::new()),
            guest_cv: Condvar::new(),
            notifier: Mutex::new(None),
            stack_waker: Mutex::new(None),
            tx_blocked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            capacity,
            max_frame,
            counters: Counters::default(),
        })
    }

    pub fn wake_stack(&self) {
        let w = self.stack_waker.lock().unwrap().clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    pub fn register_stack_waker(&self, w: &Waker) {
        let mut slot = self.stack_waker.lock().unwrap();
        match &*slot {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }

    /// Whether the guest queue has room for another frame.
    pub fn guest_has_room(&self) -> bool {
        self.to_guest.lock().unwrap().len() < self.capacity
    }

    /// Queues a frame for the guest built by `fill` (which returns false to
    /// abandon it). Returns false if the queue is full.
    pub fn push_to_guest(&self, fill: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let was_empty;
        {
            let mut q = self.to_guest.lock().unwrap();
            if q.len() >= self.capacity {
                self.tx_blocked.store(true, Ordering::Release);
                return false;
            }
            let mut b = q.buffer();
            if !fill(&mut b) {
                q.recycle(b);
                return true;
            }
            was_empty = q.len() == 0;
            q.push(b);
        }
        self.counters
            .frames_to_guest
            .fetch_add(1, Ordering::Relaxed);
        if was_empty {
            self.notify_guest();
        }
        true
    }

    pub fn notify_guest(&self) {
        self.guest_cv.notify_all();
        let n = self.notifier.lock().unwrap().clone();
        if let Some(n) = n {
            n();
        }
    }

    pub fn stats(&self) -> NetStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            frames_from_guest: l(&c.frames_from_guest),
            frames_to_guest: l(&c.frames_to_guest),
            dropped_frames: l(&c.dropped_frames),
            denied: l(&c.denied),
            tcp_connections: l(&c.tcp_connections),
            udp_flows: l(&c.udp_flows),
            dns_queries: l(&c.dns_queries),
        }
    }

    pub fn drop_frame(&self) {
        self.counters.dropped_frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// The guest device's side of the network: Ethernet frames in and out.
///
/// Cheap to clone; every clone talks to the same network. All methods are
/// synchronous, never block (except [`FrameEndpoint::wait_for_frames`]) and
/// may be called from any thread.
#[derive(Clone)]
pub struct FrameEndpoint {
    pub(crate) shared: Arc<Shared>,
    pub(crate) guest_mac: [u8; 6],
    pub(crate) mtu: usize,
}

impl std::fmt::Debug for FrameEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEndpoint")
            .field("guest_mac", &self.guest_mac)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl FrameEndpoint {
    /// Hands a frame the guest transmitted to the network. Returns false if
    /// it was dropped (network stopped, frame larger than MTU + 14 bytes or
    /// shorter than an Ethernet header, or the inbound queue full).
    pub fn send_to_network(&self, frame: &[u8]) -> bool {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) || frame.len() < 14 || frame.len() > s.max_frame {
            s.drop_frame();
            return false;
        }
        {
            let mut q = s.to_net.lock().unwrap();
            if q.len() >= s.capacity {
                drop(q);
                s.drop_frame();
                return false;
            }
            let mut b = q.buffer();
            b.extend_from_slice(frame);
            q.push(b);
        }
        s.wake_stack();
        true
    }

    /// Like [`FrameEndpoint::send_to_network`], with the frame written in
    /// place by `fill` into a buffer of `len` bytes (saves a copy).
    pub fn send_to_network_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) || len < 14 || len > s.max_frame {
            s.drop_frame();
            return false;
        }
        let mut b = {
            let mut q = s.to_net.lock().unwrap();
            if q.len() >= s.capacity {
                drop(q);
                s.drop_frame();
                return false;
            }
            q.buffer()
        };
        b.resize(len, 0);
        fill(&mut b);
        s.to_net.lock().unwrap().push(b);
        s.wake_stack();
        true
    }

    /// Takes the next frame for the guest into `buf` and returns its length,
    /// or None if no frame is waiting. A frame longer than `buf` is dropped
    /// (counted) and the next one is tried.
    pub fn try_recv_from_network(&self, buf: &mut [u8]) -> Option<usize> {
        let s = &self.shared;
        let mut q = s.to_guest.lock().unwrap();
        loop {
            let f = q.pop()?;
            if f.len() > buf.len() {
                q.recycle(f);
                s.drop_frame();
                continue;
            }
            let n = f.len();
            buf[..n].copy_from_slice(&f);
            q.recycle(f);
            let low = q.len() <= s.capacity / 2;
            drop(q);
            if low && s.tx_blocked.swap(false, Ordering::AcqRel) {
                s.wake_stack();
            }
            return Some(n);
        }
    }

    /// Whether a frame is waiting for the guest.
    pub fn has_frames(&self) -> bool {
        self.shared.to_guest.lock().unwrap().len() > 0
    }

    /// Blocks until a frame is waiting for the guest or `timeout` passes;
    /// returns whether a frame is waiting.
    pub fn wait_for_frames(&self, timeout: Duration) -> bool {
        let s = &self.shared;
        let deadline = Instant::now() + timeout;
        let mut q = s.to_guest.lock().unwrap();
        while q.len() == 0 {
            let now = Instant::now();
            if now >= deadline || s.closed.load(Ordering::Acquire) {
                return false;
            }
            q = s.guest_cv.wait_timeout(q, deadline - now).unwrap().0;
        }
        true
    }

    /// Sets a callback run whenever the guest's queue goes from empty to
    /// non-empty (and when the network stops). It runs on the stack's thread
    /// and must not block: typically it signals the emulator's `wait`.
    pub fn set_notifier(&self, notifier: impl Fn() + Send + Sync + 'static) {
        *self.shared.notifier.lock().unwrap() = Some(Arc::new(notifier));
    }

    /// Whether the network has stopped.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The MAC address the guest's device should use.
    pub fn guest_mac(&self) -> [u8; 6] {
        self.guest_mac
    }

    /// The link's IP MTU (frames are up to MTU + 14 bytes).
    pub fn mtu(&self) -> usize {
        self.mtu
    }
}

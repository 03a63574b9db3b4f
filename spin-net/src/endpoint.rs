//! The frame queues between the guest's network device and the stack.
//!
//! The device side ([`FrameEndpoint`]) is used from any thread, synchronously:
//! the emulator's device calls [`FrameEndpoint::send_to_network`] for each
//! frame the guest transmits and [`FrameEndpoint::try_recv_from_network`] to
//! fill the guest's receive buffers. Both queues are bounded: frames from the
//! guest beyond the bound are dropped (as a NIC would); frames for the guest
//! stay in the stack (TCP holds them back) until the guest drains its queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Frames waiting in the queue to the guest now (at most the frame queue's bound).
    pub queued_to_guest: u64,
    /// Frames from the guest waiting for the stack now (at most the bound).
    pub queued_to_network: u64,
}

/// Most buffers kept for reuse per queue.
const POOL: usize = 256;

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
        // Up to POOL buffers of a 1500-byte link, fewer of larger ones.
        let limit = if b.capacity() <= 2048 { POOL } else { 64 };
        if self.pool.len() < limit && b.capacity() <= 70_000 {
            self.pool.push(b);
        }
    }

    /// Moves up to `n` pooled buffers into `to`.
    pub fn take_pool(&mut self, to: &mut Vec<Vec<u8>>, n: usize) {
        let k = self.pool.len().min(n);
        let at = self.pool.len() - k;
        to.extend(self.pool.drain(at..));
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
    /// Set when the stack was woken and has not polled since: further wakes
    /// are redundant (one wake per batch of frames, not one per frame).
    pub stack_woken: AtomicBool,
    /// Frames in the guest queue (readable without its lock).
    pub to_guest_len: AtomicUsize,
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
            stack_woken: AtomicBool::new(false),
            to_guest_len: AtomicUsize::new(0),
            tx_blocked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            capacity,
            max_frame,
            counters: Counters::default(),
        })
    }

    /// Wakes the stack unless a wake is already pending.
    pub fn wake_stack(&self) {
        if self.stack_woken.swap(true, Ordering::SeqCst) {
            return;
        }
        let w = self.stack_waker.lock().unwrap().clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Called by the stack at the start of each poll, before it looks at
    /// its inputs: wakes from then on are needed again. The waker is stored
    /// before the flag is cleared, so that a wake that sees the flag clear
    /// finds the waker.
    pub fn register_stack_waker(&self, w: &Waker) {
        {
            let mut slot = self.stack_waker.lock().unwrap();
            match &*slot {
                Some(old) if old.will_wake(w) => {}
                _ => *slot = Some(w.clone()),
            }
        }
        self.stack_woken.store(false, Ordering::SeqCst);
    }

    /// Frames waiting in the guest queue.
    pub fn guest_queue_len(&self) -> usize {
        self.to_guest_len.load(Ordering::SeqCst)
    }

    /// Appends `frames` to the guest queue (the caller checked the room),
    /// refills `pool` with recycled buffers, and notifies the guest if the
    /// queue was empty.
    pub fn push_batch_to_guest(&self, frames: &mut Vec<Vec<u8>>, pool: &mut Vec<Vec<u8>>) {
        if frames.is_empty() {
            return;
        }
        let n = frames.len();
        let was_empty = {
            let mut q = self.to_guest.lock().unwrap();
            let was_empty = q.len() == 0;
            for f in frames.drain(..) {
                q.push(f);
            }
            self.to_guest_len.store(q.len(), Ordering::SeqCst);
            if pool.len() < POOL / 2 {
                q.take_pool(pool, POOL);
            }
            was_empty
        };
        self.counters
            .frames_to_guest
            .fetch_add(n as u64, Ordering::Relaxed);
        if was_empty {
            self.notify_guest();
        }
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
            self.to_guest_len.store(q.len(), Ordering::Release);
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
            queued_to_guest: self.to_guest.lock().unwrap().len() as u64,
            queued_to_network: self.to_net.lock().unwrap().len() as u64,
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
            s.to_guest_len.store(q.len(), Ordering::SeqCst);
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
            if low && s.tx_blocked.swap(false, Ordering::SeqCst) {
                s.wake_stack();
            }
            return Some(n);
        }
    }

    /// Whether a frame is waiting for the guest.
    pub fn has_frames(&self) -> bool {
        self.shared.guest_queue_len() > 0
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

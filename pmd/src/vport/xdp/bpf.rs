//! The XDP program that hands each frame to the AF_XDP socket of its RX queue, loaded with
//! bpf(2) and no C toolchain: five instructions assembled here (what libxdp's default program
//! does), an XSKMAP of the queues' sockets, and a `bpf_link` attaching the program to the
//! interface, so it goes away with the last file descriptor of the link (the process exiting,
//! however it ends). ABI: `include/uapi/linux/bpf.h`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::error::XdpError;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: `BPF_XDP`.
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE`: generic XDP, in the stack after the driver built an skb.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver's RX path.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `XDP_PASS`: frames of a queue without a socket go to the kernel stack.
const XDP_PASS: i32 = 2;
/// `BPF_FUNC_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `BPF_PSEUDO_MAP_FD`: the 64-bit immediate is a map file descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);`
pub(crate) fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + rx_queue_index)      BPF_LDX | BPF_MEM | BPF_W
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (two slots)                    BPF_LD | BPF_DW | BPF_IMM
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS                           BPF_ALU64 | BPF_MOV | BPF_K
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // call bpf_redirect_map                   BPF_JMP | BPF_CALL
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // exit                                    BPF_JMP | BPF_EXIT
        insn(0x95, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// bpf(2) with `attr`, returning what the call returns.
fn bpf_call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live repr(C) prefix of `union bpf_attr` for `cmd`, its size passed
    // with it (the kernel reads that many bytes and zero-extends the rest); pointers inside it
    // point at memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// bpf(2) with `attr` for a command that returns a new file descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let r = bpf_call(cmd, attr)?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// The program, its map and its link to one interface. Dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct XdpProgram {
    /// Declared first: dropped first, detaching the program before the map goes.
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
    /// Native (driver) XDP, else generic.
    pub(crate) native: bool,
}

impl XdpProgram {
    /// Name of the map and the program (`bpftool` shows it).
    const NAME: [u8; 16] = *b"oxpmd_xsk\0\0\0\0\0\0\0";

    /// An XSKMAP of `entries` sockets.
    pub(crate) fn create_map(entries: u32) -> Result<OwnedFd, XdpError> {
        let mut m = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: Self::NAME,
            ..Default::default()
        };
        bpf(BPF_MAP_CREATE, &mut m).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => XdpError::NoKernelSupport {
                op: "bpf(BPF_MAP_CREATE, XSKMAP)",
                source: e,
            },
            _ => XdpError::os("bpf(BPF_MAP_CREATE, XSKMAP)", e),
        })
    }

    /// Loads the program with an XSKMAP of `entries` queues and attaches it to `ifindex`
    /// (native XDP, else generic when the driver has none).
    pub(crate) fn attach(iface: &str, ifindex: u32, entries: u32) -> Result<XdpProgram, XdpError> {
        let name = Self::NAME;
        let map = Self::create_map(entries)?;
        let insns = redirect_program(map.as_raw_fd());
        let license = c"Dual MIT/GPL";
        let mut log = vec![0u8; 4096];
        let mut p = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        let prog = bpf(BPF_PROG_LOAD, &mut p).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            if !text.is_empty() {
                log::error!("{iface}: the verifier refused the XDP program: {text}");
            }
            XdpError::os("bpf(BPF_PROG_LOAD, XDP)", e)
        })?;
        let link = |flags| {
            let mut l = LinkCreateAttr {
                prog_fd: prog.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: BPF_XDP,
                flags,
            };
            bpf(BPF_LINK_CREATE, &mut l)
        };
        let busy = |source| XdpError::ProgramAttached {
            iface: iface.to_string(),
            source,
        };
        let (link, native) = match link(XDP_FLAGS_DRV_MODE) {
            Ok(l) => (l, true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(busy(e));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => {
                log::warn!("{iface}: no native XDP in its driver ({e}); using generic XDP");
                match link(XDP_FLAGS_SKB_MODE) {
                    Ok(l) => (l, false),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => {
                        return Err(busy(e));
                    }
                    Err(e) => return Err(XdpError::os("bpf(BPF_LINK_CREATE, BPF_XDP)", e)),
                }
            }
            Err(e) => return Err(XdpError::os("bpf(BPF_LINK_CREATE, BPF_XDP)", e)),
        };
        Ok(XdpProgram {
            _link: link,
            _prog: prog,
            map,
            native,
        })
    }

    /// Sends the frames of RX queue `queue` to socket `xsk`.
    pub(crate) fn insert(&self, queue: u32, xsk: RawFd) -> Result<(), XdpError> {
        let key = queue;
        let value = xsk as u32;
        let mut u = MapUpdateAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        bpf_call(BPF_MAP_UPDATE_ELEM, &mut u)
            .map(drop)
            .map_err(|e| XdpError::os("bpf(BPF_MAP_UPDATE_ELEM, XSKMAP)", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_redirect_of_libxdp() {
        let p = redirect_program(7);
        // SAFETY: Insn is repr(C) plain data of 8 bytes; six of them are 48 bytes.
        let bytes: [u8; 48] = unsafe { std::mem::transmute(p) };
        assert_eq!(
            bytes,
            [
                0x61, 0x12, 16, 0, 0, 0, 0, 0, // r2 = *(u32 *)(r1 + 16)
                0x18, 0x11, 0, 0, 7, 0, 0, 0, // r1 = map fd 7
                0, 0, 0, 0, 0, 0, 0, 0, //
                0xb7, 0x03, 0, 0, 2, 0, 0, 0, // r3 = 2
                0x85, 0, 0, 0, 51, 0, 0, 0, // call 51
                0x95, 0, 0, 0, 0, 0, 0, 0, // exit
            ]
        );
    }
}

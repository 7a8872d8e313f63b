//! A width-generic description of the ABI types, and the C layout rules applied to it.
//!
//! Every struct and union of [`crate::abi`] is declared through a macro that also produces
//! its [`Record`]: the field names in order, and for each field a [`Ty`] derived from the
//! field's Rust type through [`CType`] (so the description cannot drift from the
//! definition). A pointer-sized field is described as such, not as 4 or 8 bytes, so one
//! description yields both Windows layouts: [`Record::size`], [`Record::align`] and
//! [`Record::offset`] apply the C rules (each field at the next multiple of its alignment,
//! the record's alignment the largest of its fields', its size rounded up to that
//! alignment; a union's fields all at 0) for [`Width::W32`] and [`Width::W64`].
//!
//! These are `const fn`s: the host width is asserted against the Rust compiler's own
//! layout at compile time (`size_of`/`align_of`), every field offset in a unit test, and
//! both widths against the mingw-w64 headers by `tests/header_probe.rs`, which reads
//! [`RECORDS`], [`ALIASES`], [`FN_TYPES`] and [`CONSTANTS`].
//!
//! No record here needs `#pragma pack`: on x86, `ws2spi.h` wraps its declarations in
//! `pshpack4.h`, which changes nothing for members of at most 4 bytes.
//!
//! ```
//! use san_spi_core::addr::Width;
//! use san_spi_shim::abi::layout::CRecord;
//! use san_spi_shim::abi::{WSAOVERLAPPED, WSPPROC_TABLE};
//!
//! assert_eq!(WSPPROC_TABLE::RECORD.size(Width::W32), 30 * 4);
//! assert_eq!(WSAOVERLAPPED::RECORD.size(Width::W32), 20);
//! assert_eq!(WSAOVERLAPPED::RECORD.size(Width::W64), 32);
//! let (i, _) = WSAOVERLAPPED::RECORD.field("hEvent").unwrap();
//! assert_eq!(WSAOVERLAPPED::RECORD.offset(i, Width::W64), 24);
//! ```

pub use san_spi_core::addr::Width;

/// The layout-relevant kind of a C type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A fixed-size integer, aligned to its size (`BYTE`, `WORD`, `WCHAR`, `DWORD`, `INT`,
    /// `LONG`, `BOOL`, …).
    Int {
        /// `sizeof`: 1, 2 or 4.
        bytes: usize,
        /// Whether the type is signed.
        signed: bool,
    },
    /// A pointer-sized integer (`ULONG_PTR`, `SOCKET`, `SIZE_T`, `LPARAM`, …).
    IntPtr {
        /// Whether the type is signed.
        signed: bool,
    },
    /// A data or function pointer (`HANDLE`, `LPVOID`, `LPWSPACCEPT`, …).
    Ptr,
    /// An array of this many elements.
    Array(&'static Ty, usize),
    /// A struct or union.
    Record(&'static Record),
}

impl Ty {
    /// `sizeof` at this width.
    pub const fn size(self, width: Width) -> usize {
        match self {
            Ty::Int { bytes, .. } => bytes,
            Ty::IntPtr { .. } | Ty::Ptr => width.pointer_len(),
            Ty::Array(elem, n) => elem.size(width) * n,
            Ty::Record(r) => r.size(width),
        }
    }

    /// `_Alignof` at this width.
    pub const fn align(self, width: Width) -> usize {
        match self {
            Ty::Int { bytes, .. } => bytes,
            Ty::IntPtr { .. } | Ty::Ptr => width.pointer_len(),
            Ty::Array(elem, _) => elem.align(width),
            Ty::Record(r) => r.align(width),
        }
    }
}

/// Struct or union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Fields one after the other.
    Struct,
    /// Fields overlaid at offset 0.
    Union,
}

/// One field of a [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name: the header's member name, or `Anonymous` for an unnamed member.
    pub name: &'static str,
    /// Its layout.
    pub ty: Ty,
    /// Its Rust type as written in the definition (`stringify!`), e.g. `LPWSPACCEPT`,
    /// `[WCHAR; WSAPROTOCOL_LEN + 1]`; the probe checks it is the header's C type.
    pub rust_type: &'static str,
}

/// The description of a `#[repr(C)]` struct or union of [`crate::abi`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The Rust name.
    pub name: &'static str,
    /// The C type name (equal to the Rust name), or `None` for a type that is anonymous in
    /// C (its fields are then reached directly from the enclosing record's C name).
    pub c_name: Option<&'static str>,
    /// Struct or union.
    pub kind: Kind,
    /// The fields in declaration order.
    pub fields: &'static [Field],
}

/// `n` rounded up to a multiple of `align` (a power of two, at least 1).
const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) / align * align
}

impl Record {
    /// `_Alignof` at this width: the largest alignment of a field (1 if none).
    pub const fn align(&self, width: Width) -> usize {
        let mut align = 1;
        let mut i = 0;
        while i < self.fields.len() {
            let a = self.fields[i].ty.align(width);
            if a > align {
                align = a;
            }
            i += 1;
        }
        align
    }

    /// `offsetof` of field `index` at this width.
    ///
    /// # Panics
    ///
    /// If `index` is not a field's (at compile time, when evaluated in a constant).
    pub const fn offset(&self, index: usize, width: Width) -> usize {
        if index >= self.fields.len() {
            panic!("Record::offset: no such field");
        }
        if let Kind::Union = self.kind {
            return 0;
        }
        let mut offset = 0;
        let mut i = 0;
        loop {
            let ty = self.fields[i].ty;
            offset = align_up(offset, ty.align(width));
            if i == index {
                return offset;
            }
            offset += ty.size(width);
            i += 1;
        }
    }

    /// `sizeof` at this width: past the last field (or the largest, for a union), rounded
    /// up to the alignment.
    pub const fn size(&self, width: Width) -> usize {
        let mut end = 0;
        let mut i = 0;
        while i < self.fields.len() {
            let field_end = self.offset(i, width) + self.fields[i].ty.size(width);
            if field_end > end {
                end = field_end;
            }
            i += 1;
        }
        align_up(end, self.align(width))
    }

    /// The field with this name, and its index.
    pub fn field(&self, name: &str) -> Option<(usize, &'static Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
}

/// A Rust type with a known C layout.
pub trait CType {
    /// Its description.
    const TY: Ty;
}

/// A `#[repr(C)]` struct or union of [`crate::abi`] with its description.
pub trait CRecord {
    /// Its description.
    const RECORD: Record;
}

macro_rules! int_ctype {
    ($($t:ty => $bytes:expr, $signed:expr;)*) => {
        $(impl CType for $t {
            const TY: Ty = Ty::Int { bytes: $bytes, signed: $signed };
        })*
    };
}

int_ctype! {
    u8 => 1, false;
    i8 => 1, true;
    u16 => 2, false;
    i16 => 2, true;
    u32 => 4, false;
    i32 => 4, true;
}

impl CType for usize {
    const TY: Ty = Ty::IntPtr { signed: false };
}

impl CType for isize {
    const TY: Ty = Ty::IntPtr { signed: true };
}

impl<T: ?Sized> CType for *mut T {
    const TY: Ty = Ty::Ptr;
}

impl<T: ?Sized> CType for *const T {
    const TY: Ty = Ty::Ptr;
}

impl<T: CType, const N: usize> CType for [T; N] {
    const TY: Ty = Ty::Array(&T::TY, N);
}

macro_rules! fn_ptr_ctype {
    ($($args:ident)*) => {
        impl<R $(, $args)*> CType for Option<unsafe extern "system" fn($($args),*) -> R> {
            const TY: Ty = Ty::Ptr;
        }
    };
}

fn_ptr_ctype!();
fn_ptr_ctype!(A);
fn_ptr_ctype!(A B);
fn_ptr_ctype!(A B C);
fn_ptr_ctype!(A B C D);
fn_ptr_ctype!(A B C D E);
fn_ptr_ctype!(A B C D E F);
fn_ptr_ctype!(A B C D E F G);
fn_ptr_ctype!(A B C D E F G H);
fn_ptr_ctype!(A B C D E F G H I);
fn_ptr_ctype!(A B C D E F G H I J);
fn_ptr_ctype!(A B C D E F G H I J K);
fn_ptr_ctype!(A B C D E F G H I J K L);

/// A type alias of [`crate::abi`] (`DWORD`, `SOCKET`, `LPINT`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The Windows name.
    pub name: &'static str,
    /// Its layout.
    pub ty: Ty,
    /// The Rust type it names, as written (`u32`, `*mut INT`, `UINT_PTR`, …).
    pub rust_type: &'static str,
    /// Whether the C spelling of `rust_type` is the same C type as `name` (false for `HWND`,
    /// a pointer to an incomplete struct in C, declared as `*mut c_void` here). Primitive
    /// Rust integers have no C spelling: only their size and signedness are compared.
    pub same_c_type: bool,
}

/// One parameter of a [`FnSig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// The header's parameter name.
    pub name: &'static str,
    /// Its Rust type as written, an alias of [`crate::abi`] (or a pointer to one).
    pub rust_type: &'static str,
}

/// The signature of a function pointer type of [`crate::abi`], all `extern "system"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FnSig {
    /// The Windows name of the pointer type (`LPWSPACCEPT`, `LPFN_WSPRDMAWRITE`, …).
    pub name: &'static str,
    /// The return type as written (`VOID` for none).
    pub ret: &'static str,
    /// The parameters in order.
    pub params: &'static [Param],
}

/// A constant of [`crate::abi`] with its value, for the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    /// The Windows name.
    pub name: &'static str,
    /// Its value.
    pub value: u64,
}

/// Every struct and union of [`crate::abi`].
pub const RECORDS: &[&Record] = crate::abi::records::RECORDS;
/// Every type alias of [`crate::abi`].
pub const ALIASES: &[Alias] = crate::abi::scalars::ALIASES;
/// Every function pointer type of [`crate::abi`].
pub const FN_TYPES: &[FnSig] = crate::abi::functions::FN_TYPES;
/// Every constant of [`crate::abi`].
pub const CONSTANTS: &[Constant] = crate::abi::scalars::CONSTANTS;

/// `size_of::<T>()` for a pointer to `T` (the size of a field reached by `addr_of!`).
#[cfg(test)]
pub(crate) fn pointee_size<T>(_: *const T) -> usize {
    core::mem::size_of::<T>()
}

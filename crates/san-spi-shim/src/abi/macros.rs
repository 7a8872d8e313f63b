//! The declaration macros of [`crate::abi`]: each defines Rust items and, from the same
//! tokens, their [`layout`](crate::abi::layout) description, so the two cannot differ.

/// `#[repr(C)]` structs and unions, their [`CRecord`](crate::abi::layout::CRecord) and
/// [`CType`](crate::abi::layout::CType) impls, compile-time host-width checks of size and
/// alignment against the layout engine, and the list of their records.
///
/// `pub union NAME as anonymous { … }` declares a type that is an unnamed member in C.
macro_rules! c_records {
    (
        $(#[$list_meta:meta])*
        $list_vis:vis const $list:ident;
        $(
            $(#[$meta:meta])*
            pub $kind:ident $name:ident $(as $anon:ident)? {
                $(
                    $(#[$fmeta:meta])*
                    pub $field:ident : $fty:ty
                ),* $(,)?
            }
        )*
    ) => {
        $(
            $(#[$meta])*
            #[repr(C)]
            #[derive(Clone, Copy)]
            pub $kind $name {
                $(
                    $(#[$fmeta])*
                    pub $field: $fty,
                )*
            }

            impl $crate::abi::layout::CRecord for $name {
                const RECORD: $crate::abi::layout::Record = $crate::abi::layout::Record {
                    name: stringify!($name),
                    c_name: c_name!($name $(, $anon)?),
                    kind: record_kind!($kind),
                    fields: &[$(
                        $crate::abi::layout::Field {
                            name: stringify!($field),
                            ty: <$fty as $crate::abi::layout::CType>::TY,
                            rust_type: stringify!($fty),
                        },
                    )*],
                };
            }

            impl $crate::abi::layout::CType for $name {
                const TY: $crate::abi::layout::Ty = $crate::abi::layout::Ty::Record(
                    &<$name as $crate::abi::layout::CRecord>::RECORD,
                );
            }

            const _: () = assert!(
                core::mem::size_of::<$name>()
                    == <$name as $crate::abi::layout::CRecord>::RECORD
                        .size($crate::abi::layout::Width::host()),
                concat!("size of ", stringify!($name), " differs from the layout engine's"),
            );
            const _: () = assert!(
                core::mem::align_of::<$name>()
                    == <$name as $crate::abi::layout::CRecord>::RECORD
                        .align($crate::abi::layout::Width::host()),
                concat!("alignment of ", stringify!($name), " differs from the layout engine's"),
            );

            #[cfg(test)]
            impl $name {
                /// (name, offset, size) of every field, as the Rust compiler laid them out.
                pub(crate) fn rust_fields() -> Vec<(&'static str, usize, usize)> {
                    let uninit = core::mem::MaybeUninit::<$name>::uninit();
                    let base = uninit.as_ptr();
                    vec![$(
                        {
                            // SAFETY: `base` points to a live, uninitialised `$name`;
                            // `addr_of!` computes the field's address without creating a
                            // reference and without reading anything.
                            let field = unsafe { core::ptr::addr_of!((*base).$field) };
                            (
                                stringify!($field),
                                field as usize - base as usize,
                                $crate::abi::layout::pointee_size(field),
                            )
                        },
                    )*]
                }
            }
        )*

        $(#[$list_meta])*
        $list_vis const $list: &[&$crate::abi::layout::Record] = &[
            $(&<$name as $crate::abi::layout::CRecord>::RECORD,)*
        ];

        /// Every record with the Rust compiler's field layout, for the unit tests.
        #[cfg(test)]
        pub(crate) fn rust_layouts(
        ) -> Vec<(&'static $crate::abi::layout::Record, Vec<(&'static str, usize, usize)>)> {
            vec![$(
                (&<$name as $crate::abi::layout::CRecord>::RECORD, $name::rust_fields()),
            )*]
        }
    };
}

/// The C name of a record: its Rust name, or none when declared `as anonymous`.
macro_rules! c_name {
    ($name:ident) => {
        Some(stringify!($name))
    };
    ($name:ident, anonymous) => {
        None
    };
}

/// `struct` or `union` as a [`Kind`](crate::abi::layout::Kind).
macro_rules! record_kind {
    (struct) => {
        $crate::abi::layout::Kind::Struct
    };
    (union) => {
        $crate::abi::layout::Kind::Union
    };
}

/// Type aliases and their list. `pub type NAME = T as opaque;` marks an alias whose C type
/// is not the C spelling of `T` (see [`Alias::same_c_type`](crate::abi::layout::Alias)).
macro_rules! c_aliases {
    (
        $(#[$list_meta:meta])*
        $list_vis:vis const $list:ident;
        $(
            $(#[$meta:meta])*
            pub type $name:ident = $ty:ty $(as $opaque:ident)?;
        )*
    ) => {
        $(
            $(#[$meta])*
            pub type $name = $ty;
        )*

        $(#[$list_meta])*
        $list_vis const $list: &[$crate::abi::layout::Alias] = &[$(
            $crate::abi::layout::Alias {
                name: stringify!($name),
                ty: <$ty as $crate::abi::layout::CType>::TY,
                rust_type: stringify!($ty),
                same_c_type: same_c_type!($($opaque)?),
            },
        )*];
    };
}

/// Whether an alias is the C spelling of its Rust type (not marked `as opaque`).
macro_rules! same_c_type {
    () => {
        true
    };
    (opaque) => {
        false
    };
}

/// Function pointer types `Option<unsafe extern "system" fn(…) -> R>`, a compile-time
/// check that each is pointer-sized, and the list of their signatures.
macro_rules! c_fn_types {
    (
        $(#[$list_meta:meta])*
        $list_vis:vis const $list:ident;
        $(
            $(#[$meta:meta])*
            pub type $name:ident = fn($($p:ident : $pty:ty),* $(,)?) $(-> $ret:ty)?;
        )*
    ) => {
        $(
            $(#[$meta])*
            pub type $name = Option<unsafe extern "system" fn($($p: $pty),*) $(-> $ret)?>;

            const _: () = assert!(
                core::mem::size_of::<$name>() == core::mem::size_of::<usize>(),
                concat!(stringify!($name), " is not pointer-sized"),
            );
        )*

        $(#[$list_meta])*
        $list_vis const $list: &[$crate::abi::layout::FnSig] = &[$(
            $crate::abi::layout::FnSig {
                name: stringify!($name),
                ret: fn_ret!($($ret)?),
                params: &[$(
                    $crate::abi::layout::Param {
                        name: stringify!($p),
                        rust_type: stringify!($pty),
                    },
                )*],
            },
        )*];
    };
}

/// The return type of a [`FnSig`](crate::abi::layout::FnSig) as written, `VOID` if none.
macro_rules! fn_ret {
    () => {
        "VOID"
    };
    ($ret:ty) => {
        stringify!($ret)
    };
}

/// Constants and their list.
macro_rules! c_consts {
    (
        $(#[$list_meta:meta])*
        $list_vis:vis const $list:ident;
        $(
            $(#[$meta:meta])*
            pub const $name:ident : $ty:ty = $value:expr;
        )*
    ) => {
        $(
            $(#[$meta])*
            pub const $name: $ty = $value;
        )*

        $(#[$list_meta])*
        $list_vis const $list: &[$crate::abi::layout::Constant] = &[$(
            $crate::abi::layout::Constant { name: stringify!($name), value: $name as u64 },
        )*];
    };
}

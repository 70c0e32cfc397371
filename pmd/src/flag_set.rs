//! `flag_set!`: a set of named one-bit flags (device capabilities, RSS hash types) with `NONE`,
//! `contains`, `is_empty`, `|`, and a `Display` that lists the names (`none` when empty), as
//! error messages name what a device offers.

/// Declares `pub struct $name(u32)` with one `pub const` per flag (`1 << bit`) and its name.
macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $flag:ident = $bit:literal, $text:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct $name(u32);

        impl $name {
            /// None.
            pub const NONE: Self = Self(0);
            $( $(#[$fmeta])* pub const $flag: Self = Self(1 << $bit); )+

            const NAMES: &'static [(Self, &'static str)] = &[ $( (Self::$flag, $text) ),+ ];

            /// Whether every flag of `other` is in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
        }

        impl ::std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, o: Self) -> Self {
                Self(self.0 | o.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let names: Vec<&str> = Self::NAMES
                    .iter()
                    .filter(|(c, _)| self.contains(*c))
                    .map(|(_, n)| *n)
                    .collect();
                if names.is_empty() {
                    f.write_str("none")
                } else {
                    f.write_str(&names.join(","))
                }
            }
        }
    };
}
pub(crate) use flag_set;

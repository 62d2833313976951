//! The two macros of the scripts: [`scripts!`], the one place a script is registered, and
//! [`lua!`], which puts a script's source together from its Lua files.

/// A script's source: `lib.lua`, then the given files.
macro_rules! lua {
    ($($file:literal),+) => {
        concat!(include_str!("../lua/lib.lua"), $(include_str!(concat!("../lua/", $file))),+)
    };
}

/// Registers each script, `module::Step`: declares its module, gives its step the script hashed
/// once ([`Registered`](super::step::Registered), which [`Step`](super::step::Step) requires, so
/// a step nobody registered does not compile), and lists its name and source in `SOURCES` so
/// a command Redis refused inside it can be named.
macro_rules! scripts {
    ($($module:ident::$step:ident),+ $(,)?) => {
        $(pub(super) mod $module;)+

        /// Every script's name and source.
        const SOURCES: &[(&str, &str)] = &[$(
            (<$module::$step<'static> as step::Step>::NAME, $module::SOURCE)
        ),+];

        $(
            impl step::Registered for $module::$step<'_> {
                fn script() -> &'static redis::Script {
                    static SCRIPT: std::sync::LazyLock<redis::Script> =
                        std::sync::LazyLock::new(|| redis::Script::new($module::SOURCE));
                    &SCRIPT
                }
            }
        )+
    };
}

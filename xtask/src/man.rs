//! Man pages: clap_mangen's rendering of a binary's clap definition, and for
//! `gearman-driver` the sections `--help` has no room for (signals, files,
//! environment, exit status), which `man` readers look for.

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// One man page, of a binary or of a subcommand.
pub struct Page {
    man: Man,
    is_driver: bool,
}

impl Page {
    /// `cmd` must be built (`Command::build`), so that subcommands carry
    /// their full names and the global flags.
    pub fn new(cmd: clap::Command) -> Page {
        let is_driver = cmd.get_name() == "gearman-driver";
        let source = format!("gearman-driver {}", env!("CARGO_PKG_VERSION"));
        Page {
            man: Man::new(cmd).source(source),
            is_driver,
        }
    }

    pub fn file_name(&self) -> String {
        self.man.get_filename()
    }

    pub fn render(&self) -> std::io::Result<Vec<u8>> {
        let mut page = Vec::new();
        if self.is_driver {
            render_driver(&self.man, &mut page)?;
        } else {
            self.man.render(&mut page)?;
        }
        Ok(page)
    }
}

fn render_driver(man: &Man, page: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(page)?;
    man.render_name_section(page)?;
    man.render_synopsis_section(page)?;
    man.render_description_section(page)?;
    driver_description().to_writer(page)?;
    man.render_options_section(page)?;
    man.render_subcommands_section(page)?;
    driver_sections().to_writer(page)?;
    man.render_version_section(page)
}

fn driver_description() -> Roff {
    let mut roff = Roff::new();
    roff.control("PP", []).text([roman(
        "Worker files (TOML) below the lib dirs declare each executable and the jobs it \
         serves; a namespace selects them. Flags override the keys of the driver config \
         file and may stand before or after the subcommand. The project README is the \
         reference for worker files, the worker protocols and the console.",
    )]);
    roff
}

fn driver_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SIGNALS"]);
    item(
        &mut roff,
        "TERM, INT",
        "Stop taking jobs, let jobs in flight finish (up to shutdown_timeout), stop every \
         process, remove the pid file, exit 0. A second TERM or INT kills every process at once.",
    );
    item(
        &mut roff,
        "HUP",
        "Reopen the log file (after logrotate moved it), then reload the config and worker \
         files: unchanged jobs keep their processes. The console's reload does the same.",
    );
    roff.control("SH", ["ENVIRONMENT"]);
    item(
        &mut roff,
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd for a Type=notify service: the driver reports READY=1 once every \
         job has its min_processes ready (or failed to start), STATUS= each interval, \
         RELOADING=1 and READY=1 around a reload, STOPPING=1 on shutdown, and WATCHDOG=1 \
         at half of WATCHDOG_USEC. Worker processes do not inherit them.",
    );
    roff.control("SH", ["FILES"]);
    item(
        &mut roff,
        "/etc/gearman-driver/driver.toml",
        "The config of the packaged service.",
    );
    item(
        &mut roff,
        "/etc/gearman-driver/workers/",
        "Its lib dir: worker files, by namespace.",
    );
    item(
        &mut roff,
        "/var/log/gearman-driver/driver.log",
        "Its log file, rotated by /etc/logrotate.d/gearman-driver.",
    );
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 after a clean shutdown (or when check finds no problem), 1 for configuration \
         errors or a forced shutdown, 2 for bad flags.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("gearman-driver-console"),
        roman("(1), "),
        bold("gearmand"),
        roman("(8), "),
        bold("gearman"),
        roman("(1), "),
        bold("systemd.service"),
        roman("(5)"),
    ]);
    roff
}

/// A tagged paragraph: the term in bold, its text indented below.
fn item(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", [])
        .text([bold(term)])
        .text([roman(text)]);
}

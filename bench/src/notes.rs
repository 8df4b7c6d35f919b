//! Findings written into BENCHMARKS.md's notes: what the profiles showed,
//! measured while working on the figures they explain. The benchmark
//! prints them with every run so that the table and its explanation stay
//! together.

/// The pool-size scenario: where the time went with many idle processes.
pub const POOL_SIZE: &[&str] = &[
    "Pool size, what the counts mean: segments and bytes are those gearmand sent and received \
     on the workers' connections (the clients' are closed before the reading); syscalls are \
     counted by `perf stat -e raw_syscalls:sys_enter` in a batch of their own, for gearmand \
     and for the workers (the driver with its processes, or the plain workers).",
    "Pool size, finding (before the fix, one run, 2,000 jobs, 32 in flight): gearmand NOOPs \
     every sleeping connection of a function for each job it queues (`gearman_server_job_queue()` \
     in libgearman-server/job.cc), each woken connection sends GRAB_JOB, all but one get \
     NO_JOB and PRE_SLEEP again. Per job at gearmand, 4 → 1,000 idle stdio processes: 2.0 → \
     124 segments, 282 → 1,748 bytes, 19 → 316 gearmand syscalls, 7 → 132 syscalls in the \
     driver and its processes, 180 → 2,175 µs CPU; throughput 5,983 → 434 jobs/s. Plain Rust \
     workers the same: 2.0 → 131 segments, 13,475 → 361 jobs/s. The burst of 500 jobs of \
     200 ms onto 1,000 idle processes drained in 309–332 ms (1.5–1.7 × ideal).",
    "Pool size, the fix (src/gearman/arming.rs): of a job's idle members only one sleeps on \
     gearmand (PRE_SLEEP); the others rest, registered but silent, so gearmand never wakes \
     them. A member that takes a job first calls the most recently idle resting member, which \
     asks at once (GRAB_JOB); a member that found a job it was not woken for (a backlog) calls \
     two, so a burst spreads in a doubling wave; a member that finished a job asks for the \
     next one with its answer and rests after NO_JOB when another watches. After (same commands, one run, measured at the first version of the \
     fix, in which a finished member rested without asking; asking with the answer, as now, \
     keeps a saturated pool's next job free of wake-ups): per job at 1,000 idle processes 5.0 \
     segments and 306 bytes at gearmand, 150 µs CPU, 8,155 jobs/s (1.49 × the 4-process \
     figure of that run, which the machine's other load pulled down); 200 idle: 5.0 segments, \
     7,055 jobs/s; syscalls per job at 1,000 idle: gearmand 316 → 25, driver and processes \
     132 → 9. The burst drained in 260–296 ms (1.30–1.48 × ideal). Plain workers keep the herd: \
     no worker library can avoid it on its own.",
    "Pool size, method: `cargo run --release -p gearman-driver-bench -- --scenario pool-size \
     --runs 1 --jobs 2000`, once with the binaries of the commit before the fix and once after.",
    "Pool size, second finding (2026-11-23, 200 and 1,000 idle processes stuck at 6.0 segments \
     per job and 0.67–0.75 × the 4-process figure): counting each member's packets showed almost \
     no NOOPs. With 32 clients and spare members the pool runs a steady flow: a finisher's \
     GRAB_JOB, sent with its answer, nearly always finds the next job (gearmand holds one), and \
     the rule for a backlog had every such finisher call two resting members, whose asks came \
     back NO_JOB: per job 3 GRAB_JOB, 2 NO_JOB, 1 JOB_ASSIGN. Now only a called or just-started \
     member that finds a job counts as a backlog (tests/steady_flow.rs). After, same command with \
     --runs 1: 200 idle 6.0 → 3.0 segments and 330 → 294 bytes per job, 1,000 idle 6.0 → 2.6; \
     throughput 0.69 → 0.83–1.10 × and 0.75 → 0.77–0.94 × the 4-process figure over three runs. \
     `perf record` on the supervisor at 1,000 idle then showed a count of the pool's members on \
     every job taken (`Job::live_count`, 10 % of its samples), now made only when no member is \
     idle. Building the policy's view of 1,000 members per batch of events came next (13 %: a \
     vector of views, then three walks over it); the policy now walks the members once, \
     without a vector (9 %). Per-state counts kept by the job would remove that walk too.",
    "Pool size, third finding (2026-12-08, the Intel host): `perf record --call-graph dwarf -p \
     <supervisor>` at 1,000 idle processes under load put 8.6 % of the supervisor's samples in the \
     policy's walk over the members, made after every batch of process events. Of the two events \
     of each job served, answering (busy to idle) can never make the policy act (a start needs no \
     member idle, a scale-down a fresh poll), and taking a job (idle to busy) can only while jobs \
     wait; the supervisor now decides after those two only then (`policy::may_change_decision`; \
     its test walks every settled job of up to 4 members and checks that a skipped decision would \
     have done nothing). After: 0.2 % of the samples. Throughput onto 1,000 idle processes moved \
     within this host's noise (`--scenario pool-size --runs 1 --jobs 10000`, the binaries before \
     and after in turn, two pairs: 0.79 and 0.72 × the 4-process figure before, 0.70 and 0.83 × \
     after).",
];

/// The throughput scenario: where a job's CPU goes per way of running it.
pub const THROUGHPUT: &[&str] = &[
    "Throughput, where the time goes (`perf record -a -g` over 5 s of one variant at a time, \
     `strace -c` on the supervisor and on one exec slot; 2 cores, 32 jobs in flight). \
     stdio: of all CPU, gearmand 38 %, the supervisor 31 %, the benchmark's client 21 %, the \
     reverse-worker processes 7 %. The supervisor makes 4.7 system calls per job (recvfrom and \
     writev on gearmand's connection, write and read on the process's pipes, 0.65 epoll_wait), \
     the least a relay can make; its kernel time is mostly waking the process and gearmand \
     (loopback TCP delivers in the sender's context). The relay costs about what a second \
     worker's socket I/O costs, so on two saturated cores stdio stays near 0.6-0.7 × a worker \
     that speaks Gearman itself, and the Python helper, which adds its interpreter to the same \
     path, below that; a worker that must come closer holds gearmand's connection itself \
     (`protocol = \"gearman\"`).",
    "Throughput, stdio, the bound (2026-11-24, from the committed full run of 03:22 UTC): \
     both variants keep the machine busy (idle 5 % under the plain workers, 8 % under stdio), \
     so throughput follows the CPU the machine spends per job: 81.5 µs under the plain \
     workers, 112 µs under stdio. The 30 µs between them is the supervisor's own CPU per job \
     (33 µs), about half of it in the kernel. 0.90 × the plain worker would leave the relay \
     under 9 µs per job, less than its kernel time alone: the pipe write that wakes the \
     process and the socket write that wakes gearmand are each a wake-up on the other core. \
     With spare members the same relay keeps up: 32 stdio processes ran at 1.01 × the 4 plain \
     workers in the pool-size table. The Python helper runs the same relay plus an \
     interpreter (8 µs of Python per job in a loop without I/O), so its row stays below the \
     stdio Rust row and cannot reach 0.80 × while that row is at 0.68 ×. Its loop now keeps \
     its stream methods in locals and answers bytes without the generic conversion: 8.2 → \
     5.4 µs per job without I/O; under the driver its four processes' CPU per job (schedstat \
     against the JOBS column of `ps`, two pairs in turn) went from 40.2 to 35.4 µs, most of \
     it the wake-up and a cold interpreter per job; throughput moved within the noise.",
    "Throughput, exec: `rev` itself (dynamic loading, libc start-up) is 58 % of all CPU, the \
     command between clone and exec 7 %, the four slots 15 %, the supervisor 6 %, gearmand \
     8 %. The C CLI pays the same start of `rev` per job. A slot now runs each command in one \
     poll(2) loop instead of an async runtime: 38 system calls per job instead of 50; \
     throughput moved within the noise, 0.97-1.03 × the C CLI in three runs.",
    "Throughput, exec, second finding (2026-11-24): `strace -c` on a slot does not see its \
     command's child before `execve`, and `strace -f` showed that glibc's posix_spawn (behind \
     std's Command) made 126 system calls there per job: it cannot know which signals have \
     handlers, so it asks about each of the 64 and resets it (124 rt_sigaction), after a \
     getrlimit per file action and a stack mapped and unmapped around the clone in the slot. \
     A slot now starts its command with its own clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) \
     onto a stack it keeps (src/exec_slot/launch.rs); the child resets only the handlers the \
     slot has (read once at start). Per job: the child before exec 126 → 11 system calls, the \
     slot 34 → 23 (no pidfd_open, no fcntl or poll for a workload that fits the pipe); \
     `read` no longer clears a 64 KiB buffer each call. The four slots' share of all CPU \
     10.9 → 9.2 %. Paired runs (`--scenario throughput --variant exec,gearman-cli --runs 3 \
     --jobs 5000`, the binaries of the commit before and after in turn): 1.06 and 1.04 × the C \
     CLI before, 1.08–1.10 × after in four runs.",
    "Throughput, http, 4 slots: the supervisor 37 % of all CPU, gearmand 30 %, the client 13 %, \
     the endpoint 11 %, idle 8-11 %. Per job the supervisor makes 2 writev and 2 recvfrom \
     (gearmand and the endpoint) and 0.6 epoll_wait; about half of its time is the kernel \
     sending those two writes (loopback TCP delivers in the sender's context), hyper and the \
     JSON of driveshaft's request and answer about 10 %. A slot holds its job through two \
     hops (gearmand, then the endpoint) where a plain worker has one, so with 4 in flight \
     every process wakes for each job alone: gearmand spends about 74 µs of CPU per job here \
     against 48 µs under the plain workers. Tried: one hyper connection per slot, driven by \
     the slot's own task instead of the pooled client's connection task: the same ratio to \
     the ceiling in three paired runs (0.36-0.41 × either way), so the pooled client stays.",
    "Throughput, http pool: a slot is a connection, not a process, so a pool is sized for \
     what its endpoint can take, as driveshaft's worker_count is. With 16 slots gearmand, the \
     supervisor and the endpoint each find several requests per wake-up, and the same two \
     cores carry about 1.5 × the jobs of 4 slots. The target is judged on this row: it \
     measures what the protocol costs per job once the pool is sized, where the 4-slot row \
     measures a pool too small to cover its own round trip.",
    "Throughput, metrics cost (2026-11-24, a run with ±9 % noise): with the HTTP listener on \
     and scraped every second the supervisor spent 1.046 × and 1.062 × (7 paired rounds) the \
     CPU per job of metrics off, while throughput stayed within 1 % (1.008 × and 1.013 ×); the \
     committed run before, 0.955 ×, was inside its own ±25 % noise. `perf record -F 2000 -g -p \
     <supervisor>` on both: the recorder's own code (`Recorder::refresh`, `on_event`, \
     `retain_jobs`) is 0.7 % of the supervisor's samples and the listener's thread 0.1 %; the \
     rest of the difference is spread thin over the relay's own functions, the same code \
     running slower per job, with no single place to remove. Scraping is not the cost: with \
     the listener on and scraped only once, the ratio was 1.076 × (7 rounds); two more 7-round \
     runs with the scraper gave 1.048 × and 1.031 ×.",
    "Throughput, metrics cost, second look (2026-11-24): `strace -c -f` on the supervisor \
     over 5 s of each variant counted the same calls per job with metrics on and off (one \
     writev, write, recvfrom and read, 0.65 epoll_wait; 5 futex in all). Its threads' \
     /proc schedstat: the HTTP thread used 7 ms of CPU in 10 s against 6.6 s on the main \
     thread. Builds with parts switched off, 7 paired rounds each: recorder and history off \
     with the listener serving, 1.052 ×; no listener, only a thread answering the scraper's \
     requests with an empty 200, 1.053 × and 1.000 ×; neither variant with listener or \
     scraper (the same build twice), 1.000 × and 0.985 ×. The unchanged build gave 1.039 ×, \
     1.071 × and 1.060 × that morning. The ratio moves by about ±3 % from run to run, as much \
     as the target; turning the recorder and the history off did not remove the rest. \
     The benchmark now reads a process's CPU from its CPU clock in nanoseconds; /proc's \
     clock ticks were 1.4 % of one measurement.",
    "Throughput, stdio, wake-up preemption (2026-12-07): `perf record -F 4000 -g -p \
     <supervisor>` under stdio-rust put 45 % of the supervisor's samples in the scheduler, \
     and 16.6 % were the supervisor switched out on its way back from the pipe write that \
     hands a process its job: the woken process preempted it before it could relay the other \
     answers of the same wake-up. Worker processes now run under SCHED_BATCH \
     (`worker_scheduling`, default `batch`): the same CPU share at the same nice value, \
     without preempting the task that woke them. Over 4 s at about 28 k jobs/s the \
     supervisor's involuntary switches went from 72,203 to 11,155 (voluntary 52,492 to \
     66,801: 37 % fewer in all; /proc/<pid>/status). Paired runs (`--scenario throughput \
     --variant plain,stdio-rust,stdio-python --runs 5`, normal and batch in turn, four \
     pairs, the first two with a build that set the policy from an environment variable, the \
     last two with `--worker-scheduling normal` against the default): stdio-rust 0.680, \
     0.651, 0.686, 0.695 × the ceiling under normal, 0.775, 0.763, 0.713, 0.764 × under \
     batch. The Python helper stayed within the noise (0.54-0.68 × either way): its \
     interpreter is the larger part of its cost. Latency with one job in flight did not \
     move (stdio p50 253-277 µs either way).",
    "Latency and exec on the machine of 2026-12-07 (Intel Xeon; the runs before were on AMD \
     EPYC): the plain worker's p50 fell from 250-260 µs to 140-200 µs while every driver row \
     stayed near its old absolute figure or rose, so the ratios grew, the http row too (1.20 \
     → 1.9-2.1 ×), whose slots start no process. Paired latency runs (`--scenario latency \
     --runs 5`, `--worker-scheduling normal` and the default in turn, two pairs): stdio p50 \
     334 and 304 µs under normal, 320 and 332 µs under batch, so the policy is not the cause. \
     exec measured 1.02 × the C CLI here against 1.13 × there (see the exec note of the \
     same day).",
    "Throughput, exec, third finding (2026-12-07, the Intel host): `perf record -a -F 3000` \
     over 5 s of each variant (`--variant exec` and `--variant gearman-cli`, 40,000 jobs). \
     `rev` was 72.5 % of all CPU under the driver and 69 % under the C CLI, and about a \
     quarter of it was glibc's dynamic loader finding out about the CPU (`init_cpu_features`, \
     `handle_intel`, `get_common_indices`, `update_active`: 18 % of all CPU). Each CPUID \
     there traps to the hypervisor, and on Intel glibc asks for every cache level in turn. \
     Per job, `rev` took 830 µs of CPU under the driver and 813 µs under the C CLI. The rest \
     of the path took 210 µs under the driver (the slots 97 µs, most of it the command's \
     `execve`; the supervisor 52 µs; gearmand 61 µs) against 297 µs under the C CLI (its \
     processes 231 µs, gearmand 66 µs). The machine sat idle 6 % of the time under the driver \
     and 2.9 % under the C CLI. So the driver's own part costs 0.7 × the C CLI's, but a start \
     of `rev` that costs four times that part on this host leaves the whole job at 1.03 ×. \
     1.1 × would need the driver's part, idle time included, under about 230 µs per job \
     against 280 µs now.",
];

/// The latency scenario: where a job's round trip goes when it is alone.
pub const LATENCY: &[&str] = &[
    "Latency, where the time goes (2026-12-07, the Intel host): a build with probes (not \
     committed) read CLOCK_MONOTONIC at each step, in a client and in the driver, over \
     20,000 sequential jobs onto one stdio process. SUBMIT_JOB → the driver reads NOOP: \
     66-83 µs. NOOP → JOB_ASSIGN (GRAB_JOB's round trip): 68-78 µs. JOB_ASSIGN → the job is \
     written to the pipe: 2.5 µs. The pipe round trip (job written → DONE read): 10-11 µs. \
     DONE → WORK_COMPLETE written: 15-17 µs, nearly all of it the writev. WORK_COMPLETE → \
     the client has it: 65-68 µs. In all, 233-269 µs. One plain worker with the same \
     probes: 63 µs, 53 µs, its answer written 5.6 µs after JOB_ASSIGN, then 67 µs: 199 µs. \
     Every pass through gearmand (its I/O thread, its processing thread, the I/O thread \
     again) costs 50-80 µs here. On this virtual machine every wake-up of an idle vCPU is a \
     trip to the hypervisor: two processes passing a byte over pipes take 61 µs per round \
     trip when each waits on its own CPU, 5.4 µs when they share one. The driver's own steps \
     add 28 µs. Its pipe round trip also gives gearmand's threads time to fall asleep, so the \
     answer's write has to wake an idle CPU: 16 µs, against 5.6 µs for a plain worker, which \
     answers before gearmand's thread has gone to sleep.",
    "Latency, the plain pool's herd: gearmand wakes all 4 idle plain workers for each job \
     and the first to ask gets it, so 4 plain workers answer sooner than one (the table's \
     `1 process` row; p50 120-177 µs against 160-200 µs in most runs by hand). The herd that the \
     driver's arming removes (src/gearman/arming.rs) is what buys the plain pool its p50. \
     Letting all 4 of the driver's connections watch (`ARMED = 4`) made the driver slower \
     (stdio p50 256-298 µs against 209-264 µs): its connections share one thread, so the race \
     has no quicker runner. The p50 target thus compares the driver with a herd that it \
     avoids by design. Against one plain worker the stdio row sits at about 1.3-1.4 ×.",
    "Latency, tried and not kept: a busy-poll window after each job handed to a process (the \
     supervisor polled epoll without sleeping for 15-50 µs, so that the answer would find it \
     awake). Latency did not move (stdio p50 290-367 µs against 314 µs without), and \
     throughput fell in paired runs (0.69 and 0.74 × the ceiling against 0.74 and 0.83 ×).",
];

<?php
// A PHP GearmanWorker as gearman-driver runs it (protocol = "gearman").
// Its servers and functions come from the environment; a `lastrun` line after
// each job feeds the console. SIGQUIT, the worker file's stop_signal, lets the
// job in flight finish before the worker exits. libgearman's wait goes on
// through signals, so work() gets a timeout to come back and see $stop.
// Without the handler QUIT, like TERM, would end the worker at once and cut
// its job off.
$stop = false;
pcntl_async_signals(true);
pcntl_signal(SIGQUIT, function () use (&$stop) { $stop = true; });

$worker = new GearmanWorker();
$worker->addServers(getenv('GEARMAN_SERVERS'));
$worker->setTimeout(500);
foreach (explode(',', getenv('GEARMAN_DRIVER_FUNCTIONS')) as $function) {
    $worker->addFunction($function, function (GearmanJob $job) {
        // DELAY (seconds) stands in for real work; a signal cuts a sleep
        // short, hence the loop.
        $until = microtime(true) + (float) getenv('DELAY');
        while (microtime(true) < $until) {
            usleep(50000);
        }
        echo 'lastrun ', time(), "\n";
        return strrev($job->workload());
    });
}
while (!$stop) {
    if (!$worker->work() && $worker->returnCode() != GEARMAN_TIMEOUT) {
        fwrite(STDERR, 'GearmanWorker: ' . $worker->error() . "\n");
        exit(1);
    }
}

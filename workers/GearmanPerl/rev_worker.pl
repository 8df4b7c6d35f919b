#!/usr/bin/perl
# A Perl Gearman::Worker as gearman-driver runs it (protocol = "gearman").
# Its servers and functions come from the environment; a `lastrun` line after
# each job feeds the console. SIGQUIT, the worker file's stop_signal, lets the
# job in flight finish before the worker exits: Gearman::Worker checks
# `stop_if` after each job and whenever a signal ends its wait. Without the
# handler QUIT, like TERM, would end the worker at once and cut its job off.
use strict;
use warnings;
use Gearman::Worker;
use Time::HiRes qw(sleep time);

$| = 1;
my $stop = 0;
$SIG{QUIT} = sub { $stop = 1 };

my $worker = Gearman::Worker->new(job_servers => [split /,/, $ENV{GEARMAN_SERVERS}]);
for my $function (split /,/, $ENV{GEARMAN_DRIVER_FUNCTIONS}) {
    $worker->register_function($function => sub {
        my $job = shift;
        # DELAY (seconds) stands in for real work; a signal cuts a sleep
        # short, hence the loop.
        my $until = time + ($ENV{DELAY} || 0);
        sleep 0.05 while time < $until;
        print "lastrun ", int(time), "\n";
        return scalar reverse $job->arg;
    });
}
$worker->work(stop_if => sub { $stop });

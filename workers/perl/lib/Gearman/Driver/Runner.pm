package Gearman::Driver::Runner;

# One gearman-driver process serving a Perl worker class over the stdio
# protocol: load the class, build its object once (with the worker options
# and the server list), set the process title, say READY, then for every
# job: decode, begin, the job method, end, encode, and DONE or FAIL.
#
# Which methods are jobs, and their Encode/Decode, the driver works out from
# the class's attributes (see Gearman::Driver::Runner::Describe) and passes
# on the command line, so this loop does no attribute parsing of its own.

use strict;
use warnings;

use Getopt::Long qw(GetOptionsFromArray);
use JSON::XS ();

use Gearman::Driver::Runner::Channel;
use Gearman::Driver::Runner::Job;

my $USAGE = <<'END';
usage: gearman-driver-perl [--lib DIR]... [--encode JOB=METHOD]... [--decode JOB=METHOD]... MODULE
       gearman-driver-perl --describe [--lib DIR]...   (the request as JSON on stdin)

Serves the jobs of the Perl worker class MODULE over gearman-driver's stdio
protocol; gearman-driver starts it. --describe prints what gearman-driver
needs to know about worker classes (their jobs and attributes) as JSON.
END

sub main {
    my ( $class, @argv ) = @_;
    my ( $describe, @lib, %encode, %decode );
    GetOptionsFromArray(
        \@argv,
        'describe' => \$describe,
        'lib=s'    => \@lib,
        'encode=s' => \%encode,
        'decode=s' => \%decode,
        'help'     => sub { print $USAGE; exit 0 },
    ) or return usage_error();
    use_lib_dirs(@lib);
    if ($describe) {
        return usage_error() if @argv;
        require Gearman::Driver::Runner::Describe;
        return Gearman::Driver::Runner::Describe->run( \@lib );
    }
    return usage_error() unless @argv == 1;
    my $module = $argv[0];
    my $ok = eval { serve( $module, \%encode, \%decode ); 1 };
    return 0 if $ok;
    print STDERR "gearman-driver-perl ($module): $@";
    return 1;
}

sub usage_error {
    print STDERR $USAGE;
    return 2;
}

# The lib dirs go before perl's own, as `use lib` would put them; this
# distribution's dir stays first so that its Gearman::Driver::Worker is the
# one worker classes inherit from.
sub use_lib_dirs {
    my @lib = @_;
    my $own = own_lib_dir();
    @INC = ( $own, @lib, grep { !ref($_) && $_ ne $own } @INC );
    return;
}

sub own_lib_dir {
    my $file = $INC{'Gearman/Driver/Runner.pm'};
    $file =~ s{/Gearman/Driver/Runner\.pm\z}{};
    return $file;
}

sub module_file {
    my ($module) = @_;
    die "`$module` is not a Perl module name\n" unless $module =~ /\A\w+(?:::\w+)*\z/;
    ( my $file = "$module.pm" ) =~ s{::}{/}g;
    return $file;
}

sub worker_options {
    my $text = $ENV{GEARMAN_DRIVER_OPTIONS};
    return {} unless defined $text && $text =~ /\S/;
    my $options = eval { JSON::XS::decode_json($text) };
    die "GEARMAN_DRIVER_OPTIONS is not a JSON object: $text\n" unless ref $options eq 'HASH';
    return $options;
}

sub servers {
    return defined $ENV{GEARMAN_SERVERS} ? $ENV{GEARMAN_SERVERS} : 'localhost:4730';
}

# The worker object, built as Gearman::Driver built it: options first, then
# the server list.
sub build_worker {
    my ( $module, $options, $servers ) = @_;
    require( module_file($module) );
    die "$module is not a Gearman::Driver::Worker\n" unless $module->isa('Gearman::Driver::Worker');
    return $module->new( %$options, server => $servers );
}

sub serve {
    my ( $module, $encode, $decode ) = @_;
    my $channel = Gearman::Driver::Runner::Channel->take_stdio;
    my $worker  = build_worker( $module, worker_options(), servers() );
    set_title($worker);
    my $prefix = defined $ENV{GEARMAN_DRIVER_PREFIX} ? $ENV{GEARMAN_DRIVER_PREFIX} : $worker->prefix;
    my %method;
    $channel->ready;
    while ( my ( $name, $handle, $unique, $workload ) = $channel->next_job ) {
        my $job = Gearman::Driver::Runner::Job->new(
            name          => $name,
            handle        => $handle,
            unique        => $unique,
            workload      => $workload,
            function_name => $prefix . $name,
            channel       => $channel,
        );
        my $body = $method{$name} ||= $worker->can($name);
        my ( $word, $payload ) =
          $body
          ? run_job( $worker, $body, $job, $encode->{$name}, $decode->{$name} )
          : ( FAIL => "$module has no job method $name" );
        $channel->frame( $word => $payload );
    }
    return;
}

sub set_title {
    my ($worker) = @_;
    my $title = $worker->process_name( $0, $ENV{GEARMAN_DRIVER_JOB} );
    $0 = $title if $title;
    return;
}

# One job, as Gearman::Driver ran it: the decoded workload goes to begin,
# the job method and end; end runs even when the job method died; the
# result is encoded last. Any death fails the job with its message.
sub run_job {
    my ( $worker, $body, $job, $encoder, $decoder ) = @_;
    my $result;
    my $ok = eval {
        my $workload = $decoder ? $worker->$decoder( $job->workload ) : $job->workload;
        $worker->begin( $job, $workload );
        my $done  = eval { $result = $worker->$body( $job, $workload ); 1 };
        my $error = $@;
        if ($done) {
            $worker->end( $job, $workload );
        }
        else {
            eval { $worker->end( $job, $workload ); 1 }
              or print STDERR "end() died after the job method had died: $@";
            die $error;
        }
        $result = $worker->$encoder($result) if $encoder;
        1;
    };
    return ( DONE => $result ) if $ok;
    return ( FAIL => failure_message($@) );
}

sub failure_message {
    my ($error) = @_;
    my $text = defined $error ? "$error" : '';
    $text =~ s/\s+\z//;
    return length $text ? $text : 'the job died without a message';
}

1;

package Gearman::Driver::Worker;

# The base class of Perl worker classes run by gearman-driver. Its method
# attributes are collected by MooseX::MethodAttributes, so a subclass only
# needs `use base qw(Gearman::Driver::Worker); use Moose;` and `: Job` on the
# methods gearmand should know.

use strict;
use warnings;

use base qw(MooseX::MethodAttributes::Inheritable);
use Moose;

our $VERSION = '0.1';

has 'server' => (
    is      => 'ro',
    isa     => 'Str',
    default => sub { defined $ENV{GEARMAN_SERVERS} ? $ENV{GEARMAN_SERVERS} : 'localhost:4730' },
);

sub prefix {
    my ($self) = @_;
    return ( ref($self) || $self ) . '::';
}

sub begin { }

sub end { }

sub process_name { return 0 }

sub default_attributes { return {} }

sub override_attributes { return {} }

sub encode {
    my ( $self, $result ) = @_;
    return $result;
}

sub decode {
    my ( $self, $workload ) = @_;
    return $workload;
}

no Moose;
__PACKAGE__->meta->make_immutable;

1;

__END__

=head1 NAME

Gearman::Driver::Worker - base class for Perl worker classes run by gearman-driver

=head1 SYNOPSIS

    package My::Workers::Images;    # <lib>/My/Workers/Images.pm

    use base qw(Gearman::Driver::Worker);
    use Moose;

    has 'quality' => ( is => 'ro', default => 75 );   # worker_options arrive here

    sub thumbnail : Job : MinProcesses(0) : MaxProcesses(4) {
        my ( $self, $job, $workload ) = @_;
        $job->send_status( 1, 2 );
        return make_thumbnail( $workload, $self->quality );
    }

    sub stats : Job : Encode : Decode {
        my ( $self, $job, $args ) = @_;    # $args is decode($job->workload)
        return { count => scalar @{ $args->{ids} } };
    }

    sub encode { my ( $self, $r ) = @_; JSON::XS::encode_json($r) }
    sub decode { my ( $self, $w ) = @_; JSON::XS::decode_json($w) }

    1;

    # gearman-driver --namespaces My::Workers --lib lib

=head1 DESCRIPTION

gearman-driver runs classes written for Perl's Gearman::Driver without
changes. Every method marked C<: Job> is registered with gearmand as
C<< $self->prefix . $method_name >> and served by processes that the driver
starts, scales and stops. Each process is one perl running
C<gearman-driver-perl>, which loads the class once, builds one object and
calls the job method for every job it is handed.

=head1 ATTRIBUTES

=head2 server

The gearmand servers the driver uses, C<host:port,host:port>, for jobs that
submit further jobs themselves.

The constructor also gets the driver config's C<worker_options> for the
class (C<GLOBAL> merged under the class's own), so a C<has> for each option
is all it takes to receive them.

=head1 METHOD ATTRIBUTES

=over 4

=item Job

Register the method with gearmand.

=item MinProcesses(n), MaxProcesses(n)

How many processes serve the job at least and at most (default 1 and 1).
C<MinChilds> and C<MaxChilds>, the older spellings, mean the same.

=item ProcessGroup(name)

Jobs naming the same group are served by the same processes; the console
lists the group as one job, C<< prefix . name >>. Only one member may set
MinProcesses or MaxProcesses.

=item Encode, Encode(method)

The job's return value is passed through C<encode> (or the named method)
before it goes back to the client.

=item Decode, Decode(method)

The workload is passed through C<decode> (or the named method) and the
result is the job method's third argument; C<< $job->workload >> stays the
raw bytes.

=item Timeout(s), MaxJobs(n), MaxLifetime(s), MaxRSS(MiB), StartTimeout(s)

gearman-driver's own per-job limits, as in worker files: a job running
longer than Timeout fails and its process is replaced; a process is
recycled after MaxJobs jobs, MaxLifetime seconds or MaxRSS MiB of resident
memory; StartTimeout bounds the time a new process may take to load.

=back

=head1 METHODS A SUBCLASS MAY OVERRIDE

=over 4

=item prefix

The text put before each method name to make the function name; by default
the class name and C<::>.

=item begin($job, $workload), end($job, $workload)

Called before and after every job method. C<end> is called even when the
job method died (but not when C<begin> did).

=item process_name($orig, $job_name)

A true return value becomes the process title (C<$0>) once the process has
started; C<$orig> is the title it had, C<$job_name> the job's console name.

=item default_attributes, override_attributes

Hash references of attributes applied to every job method: defaults where
the method does not set the attribute itself, overrides always.

=item encode($result), decode($workload)

The methods C<: Encode> and C<: Decode> use unless they name another. Here
they return their argument unchanged.

=back

=head1 THE JOB OBJECT

The second argument of every job method offers C<workload>, C<handle>,
C<function_name>, C<unique>, C<send_data($bytes)>, C<send_warning($bytes)>
and C<send_status($numerator, $denominator)>.

A job method that dies fails the job with its message; one that calls
C<exit> ends its process, which the driver replaces, and the job goes back
to gearmand to be tried again.

=cut

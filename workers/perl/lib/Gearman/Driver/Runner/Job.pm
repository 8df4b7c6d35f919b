package Gearman::Driver::Runner::Job;

# The `$job` a job method gets: what Gearman::XS::Job offered worker classes
# under Gearman::Driver (workload, handle, function_name, unique and the
# send_* calls), plus the names Gearman::Worker's jobs used (arg,
# set_status), so classes written against either run unchanged.

use strict;
use warnings;

sub new {
    my ( $class, %fields ) = @_;
    return bless {%fields}, $class;
}

sub workload      { $_[0]{workload} }
sub workload_size { length $_[0]{workload} }
sub handle        { $_[0]{handle} }
sub unique        { $_[0]{unique} }
sub function_name { $_[0]{function_name} }

# The job key: the method name, as the driver's JOB header carries it.
sub name { $_[0]{name} }

sub send_data {
    my ( $self, $data ) = @_;
    $self->{channel}->frame( DATA => $data );
    return 1;
}

sub send_warning {
    my ( $self, $warning ) = @_;
    $self->{channel}->frame( WARNING => $warning );
    return 1;
}

sub send_status {
    my ( $self, $numerator, $denominator ) = @_;
    $self->{channel}->status( $numerator, $denominator );
    return 1;
}

{
    no warnings 'once';
    *arg        = \&workload;
    *set_status = \&send_status;
}

1;

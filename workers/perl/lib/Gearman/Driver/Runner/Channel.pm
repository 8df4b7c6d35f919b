package Gearman::Driver::Runner::Channel;

# The stdio protocol as a worker process speaks it: JOB headers and
# workloads in, READY/DATA/WARNING/STATUS/DONE/FAIL frames out.
#
# Standard output belongs to the protocol, yet worker classes written for
# Gearman::Driver print to STDOUT freely (the old driver read its children's
# output). So the channel takes the real stdin and stdout for itself on
# private descriptors and points STDOUT at STDERR, which the driver logs,
# and STDIN at /dev/null.

use strict;
use warnings;

sub take_stdio {
    my ($class) = @_;
    open( my $in,  '<&', \*STDIN )  or die "cannot duplicate stdin: $!\n";
    open( my $out, '>&', \*STDOUT ) or die "cannot duplicate stdout: $!\n";
    open( STDIN,  '<',  '/dev/null' ) or die "cannot reopen stdin: $!\n";
    open( STDOUT, '>&', \*STDERR )    or die "cannot point stdout at stderr: $!\n";
    binmode $in;
    binmode $out;
    STDERR->autoflush(1);
    STDOUT->autoflush(1);
    return bless { in => $in, out => $out, buffer => '' }, $class;
}

# Every frame is written with syswrite, unbuffered: progress frames must
# reach the client while the job still runs, and a final answer must not
# wait in a buffer.
sub write_bytes {
    my ( $self, $bytes ) = @_;
    my $offset = 0;
    my $length = length $bytes;
    while ( $offset < $length ) {
        my $n = syswrite( $self->{out}, $bytes, $length - $offset, $offset );
        if ( !defined $n ) {
            next if $!{EINTR};
            die "cannot write to the driver: $!\n";
        }
        $offset += $n;
    }
    return;
}

sub ready {
    my ($self) = @_;
    $self->write_bytes("READY\n");
}

# A sized frame: DATA, WARNING, DONE or FAIL.
sub frame {
    my ( $self, $word, $payload ) = @_;
    $payload = as_bytes($payload);
    $self->write_bytes( $word . ' ' . length($payload) . "\n" . $payload );
}

sub status {
    my ( $self, $numerator, $denominator ) = @_;
    $self->write_bytes( sprintf "STATUS %s %s\n", whole($numerator), whole($denominator) );
}

# The next job as (name, handle, unique, workload), or an empty list when
# the driver closed stdin (time to exit). Read with sysread into a buffer of
# our own: readline would make Perl add ", <$in> line 7" to every message a
# job method dies with.
sub next_job {
    my ($self) = @_;
    my $end;
    while ( ( $end = index( $self->{buffer}, "\n" ) ) < 0 ) {
        die sprintf "protocol error: no JOB header in \"%s\"\n", printable( $self->{buffer} )
          if length $self->{buffer} > 65536;
        next if $self->fill;
        return if $self->{buffer} eq '';
        die sprintf "protocol error: stdin closed inside a JOB header: \"%s\"\n", printable( $self->{buffer} );
    }
    my $header = substr( $self->{buffer}, 0, $end + 1, '' );
    my ( $name, $handle, $unique, $size ) = $header =~ /\AJOB (\S+) (\S+) (\S+) (\d+)\n\z/
      or die sprintf "protocol error: expected JOB <name> <handle> <unique> <size>, got \"%s\"\n",
      printable($header);
    while ( length $self->{buffer} < $size ) {
        $self->fill or die "protocol error: stdin closed inside a $size-byte workload\n";
    }
    my $workload = substr( $self->{buffer}, 0, $size, '' );
    return ( $name, $handle, unique_id($unique), $workload );
}

# Appends what stdin has to the buffer; false at end of file.
sub fill {
    my ($self) = @_;
    while (1) {
        my $n = sysread( $self->{in}, $self->{buffer}, 65536, length $self->{buffer} );
        return $n if defined $n;
        next if $!{EINTR};
        die "cannot read from the driver: $!\n";
    }
}

# The header carries the client's unique id percent-encoded, `-` for none.
sub unique_id {
    my ($text) = @_;
    return '' if $text eq '-';
    $text =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $text;
}

# Perl strings holding characters beyond one byte go out as UTF-8, the bytes
# Gearman::XS would have sent for them; everything else as it is.
sub as_bytes {
    my ($value) = @_;
    return '' unless defined $value;
    my $bytes = "$value";
    utf8::encode($bytes) if utf8::is_utf8($bytes);
    return $bytes;
}

sub whole {
    my ($n) = @_;
    die "send_status wants whole numbers >= 0, got " . ( defined $n ? "'$n'" : 'undef' ) . "\n"
      unless defined $n && $n =~ /\A\s*\+?\d+(?:\.\d*)?\s*\z/;
    return int $n;
}

sub printable {
    my ($text) = @_;
    $text = substr( $text, 0, 200 );
    $text =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    return $text;
}

1;

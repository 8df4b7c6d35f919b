package GDPerlExamples::Convert;

# The Convert example of the Gearman::Driver blog post, as the Perl worker
# class it was there: two jobs, no process until work is queued, up to five
# processes per job while it keeps coming, and a process title naming the job.
#
#   gearman-driver --namespaces GDPerlExamples &
#   gearman -f GDPerlExamples::Convert::convert_to_jpeg < picture.png
#   echo fail | gearman -f GDPerlExamples::Convert::convert_to_gif   # ERROR in `status`
#
# STAND-IN: the post converts with Imager; this example runs with perl and
# Moose alone, so _convert reads what it can from the image header (format
# and size for PNG, GIF and JPEG) and answers a one-line report of the
# conversion it would have done. Like Imager's `read(...) or die`, a workload
# that is no image fails the job.

use base qw(Gearman::Driver::Worker);
use Moose;

sub process_name {
    my ( $self, $orig, $job_name ) = @_;
    return "$orig ($job_name)";
}

sub convert_to_jpeg : Job : MinProcesses(0) : MaxProcesses(5) {
    my ( $self, $job, $workload ) = @_;
    return _convert( $workload, 'jpeg' );
}

sub convert_to_gif : Job : MinProcesses(0) : MaxProcesses(5) {
    my ( $self, $job, $workload ) = @_;
    return _convert( $workload, 'gif' );
}

sub _convert {
    my ( $in_data, $format ) = @_;
    my ( $type, $width, $height ) = _identify($in_data)
      or die "cannot convert to $format: the workload is not a PNG, GIF or JPEG image\n";
    return sprintf "%s %dx%d, %d bytes -> %s (stand-in: no pixels converted)\n",
      $type, $width, $height, length $in_data, $format;
}

# (format, width, height) from the header alone, or nothing.
sub _identify {
    my ($data) = @_;
    if ( $data =~ /\A\x89PNG\r\n\x1a\n.{4}IHDR(.{4})(.{4})/s ) {
        return ( 'png', unpack( 'N', $1 ), unpack( 'N', $2 ) );
    }
    if ( $data =~ /\AGIF8[79]a(.{2})(.{2})/s ) {
        return ( 'gif', unpack( 'v', $1 ), unpack( 'v', $2 ) );
    }
    if ( $data =~ /\A\xff\xd8/ ) {
        # The size is in the first start-of-frame segment.
        my $at = 2;
        while ( $at + 9 <= length $data ) {
            my ( $marker, $kind, $length ) = unpack 'CCn', substr( $data, $at, 4 );
            last unless $marker == 0xff;
            if ( $kind >= 0xc0 && $kind <= 0xcf && $kind != 0xc4 && $kind != 0xc8 && $kind != 0xcc ) {
                my ( $height, $width ) = unpack 'nn', substr( $data, $at + 5, 4 );
                return ( 'jpeg', $width, $height );
            }
            $at += 2 + $length;
        }
        return ( 'jpeg', 0, 0 );
    }
    return;
}

1;

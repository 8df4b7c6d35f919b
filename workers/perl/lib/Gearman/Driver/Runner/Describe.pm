package Gearman::Driver::Runner::Describe;

# `gearman-driver-perl --describe`: loads worker classes the way
# Gearman::Driver's loader did and reports, as JSON, the facts gearman-driver
# builds its job table from. It reports and does not judge: which attributes
# are valid, how defaults and overrides combine, what is a job, is decided
# on the driver's side, in one place for worker files and classes alike.
#
# Request (stdin):  {"servers": "h:p,...",
#                    "modules": [{"module": "My::W", "options": {...}}, ...]}
# Answer (stdout):  {"modules": [{"module": "My::W", "status": "worker", ...}, ...]}
#
# status is "worker" (a Gearman::Driver::Worker: prefix, attribute hashes,
# methods with attributes, method names, a digest of its source),
# "not_worker" (loaded, but no such class: skipped, as the old loader did)
# or "error" (does not compile, or its constructor or prefix died).

use strict;
use warnings;

use B ();
use Cwd ();
use Digest::MD5 ();
use JSON::XS ();

use Gearman::Driver::Runner;

sub run {
    my ( $class, $lib ) = @_;
    # Worker classes may print while they load; keep stdout for the answer.
    open( my $answer, '>&', \*STDOUT ) or die "cannot duplicate stdout: $!\n";
    open( STDOUT, '>&', \*STDERR ) or die "cannot point stdout at stderr: $!\n";
    my $request = JSON::XS::decode_json( do { local $/; <STDIN> } );
    # Closed, so that Perl's messages do not end in ", <STDIN> line 1".
    close STDIN;
    my @lib_dirs = grep { defined } map { Cwd::realpath($_) } @$lib;
    my @modules;
    for my $wanted ( @{ $request->{modules} || [] } ) {
        my $module = $wanted->{module};
        # One odd module must not keep the others from being described.
        my $facts = eval {
            describe_module( $module, $wanted->{options} || {}, $request->{servers} || '', \@lib_dirs );
        } || { module => $module, status => 'error', error => clean_error($@) };
        push @modules, $facts;
    }
    binmode $answer;
    print {$answer} JSON::XS->new->canonical->encode( { modules => \@modules } );
    close $answer or die "cannot write the answer: $!\n";
    return 0;
}

sub describe_module {
    my ( $module, $options, $servers, $lib_dirs ) = @_;
    my %out = ( module => $module );
    my $file = eval { Gearman::Driver::Runner::module_file($module) };
    return { %out, status => 'error', error => clean_error($@) } unless $file;
    my $loaded = eval { local $SIG{__DIE__}; require $file; 1 };
    return { %out, status => 'error', error => clean_error($@) } unless $loaded;
    $out{file} = $INC{$file};

    unless ( $module->can('meta') && $module->isa('Gearman::Driver::Worker') ) {
        return { %out, status => 'not_worker', reason => "not a Gearman::Driver::Worker" };
    }
    my $meta = $module->meta;
    my $worker = eval { $module->new( %$options, server => $servers ) };
    return { %out, status => 'error', error => 'the constructor died: ' . clean_error($@) }
      unless $worker;

    for my $hook (qw(prefix default_attributes override_attributes)) {
        my $value = eval { $worker->$hook };
        return { %out, status => 'error', error => "$hook() died: " . clean_error($@) } if $@;
        if ( $hook eq 'prefix' ) {
            $out{prefix} = defined $value ? "$value" : '';
            next;
        }
        $value = {} unless defined $value;
        return { %out, status => 'error', error => "$hook() must return a hash reference" }
          unless ref $value eq 'HASH';
        $out{$hook} = { map { $_ => defined $value->{$_} ? "$value->{$_}" : undef } keys %$value };
    }

    # A class none of whose methods (nor its ancestors') has an attribute
    # never got the method-attribute metaclass: it has no jobs.
    my @methods =
      $meta->can('get_nearest_methods_with_attributes') ? $meta->get_nearest_methods_with_attributes : ();
    $out{methods} = [ map { method_facts($_) } sort { $a->name cmp $b->name } @methods ];
    $out{can}    = [ sort $meta->get_all_method_names ];
    $out{digest} = source_digest( $meta, $lib_dirs );
    return { %out, status => 'worker' };
}

sub method_facts {
    my ($method) = @_;
    my $file = B::svref_2object( $method->body )->FILE;
    return {
        name       => $method->name,
        attributes => [ @{ $method->attributes } ],
        file       => $file,
        line       => sub_line( $file, $method->name ),
    };
}

# The line of `sub NAME` in FILE, for error messages; null if not found.
sub sub_line {
    my ( $file, $name ) = @_;
    open( my $fh, '<', $file ) or return undef;
    while ( my $line = <$fh> ) {
        return $. if $line =~ /^\s*sub\s+\Q$name\E\b/;
    }
    return undef;
}

# A digest of the class's own source and that of its ancestors and roles
# found below the lib dirs: a reload replaces the processes of a class whose
# code changed.
sub source_digest {
    my ( $meta, $lib_dirs ) = @_;
    my @classes = ( $meta->linearized_isa, map { $_->name } $meta->calculate_all_roles );
    my $md5 = Digest::MD5->new;
    my %seen;
    for my $class (@classes) {
        my $rel = eval { Gearman::Driver::Runner::module_file($class) } or next;
        my $path = $INC{$rel} or next;
        $path = Cwd::realpath($path) or next;
        next if $seen{$path}++;
        next unless grep { index( $path, "$_/" ) == 0 } @$lib_dirs;
        open( my $fh, '<', $path ) or next;
        binmode $fh;
        $md5->add("$path\0");
        $md5->addfile($fh);
    }
    return $md5->hexdigest;
}

# Perl's message without the lines that point into this runner (the
# `require` that failed is ours, the error is the module's).
sub clean_error {
    my ($error) = @_;
    my $own  = Gearman::Driver::Runner::own_lib_dir();
    my $text = "$error";
    $text =~ s/ at \Q$own\E\/\S+ line \d+(?:, <\w+> (?:line|chunk) \d+)?\.?[ \t]*$//mg;
    $text = join "\n", grep { /\S/ && !/\A(?:Compilation failed in require|BEGIN failed--compilation aborted)\z/ }
      split /\n/, $text;
    return length $text ? $text : "$error";
}

1;

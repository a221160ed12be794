# The release files agree with each other: META.json is valid PGXN metadata
# whose version is the control file's default_version with a patch level,
# the abstract is the control file's comment, the files it names exist, the
# LICENSE is the PostgreSQL License and the README names it, every SQL
# script is installed by the Makefile, and `make dist` builds
# eventsource-<version>.zip/.tar.gz with the top directory PGXN expects
# (built for real from a git repository holding a commit of this tree, with
# META.json, LICENSE, the control file and every script in it), and the
# build refuses to go on without a library version.
# No server needed.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

sub slurp { my ($f) = @_; return PostgreSQL::Test::Utils::slurp_file($f); }

my $control = slurp('eventsource.control');
my ($default) = $control =~ /^default_version = '([^']*)'$/m;
my ($comment) = $control =~ /^comment = '([^']*)'$/m;
like($default, qr/^\d+\.\d+$/, "the control file's default_version ($default) is major.minor");

my $meta = eval { JSON::PP->new->decode(slurp('META.json')) };
ok($meta, 'META.json is valid JSON') or diag($@);
$meta //= {};
is($meta->{name}, 'eventsource', 'META.json: name');
is($meta->{version}, "$default.0", 'META.json: version is default_version with a patch level');
is($meta->{provides}{eventsource}{version}, $meta->{version}, 'META.json: provides the extension at that version');
is($meta->{abstract}, $comment, "META.json: the abstract is the control file's comment");
is($meta->{license}, 'postgresql', 'META.json: license postgresql');
is($meta->{prereqs}{runtime}{requires}{PostgreSQL}, '>= 15.0.0, < 16.0.0',
	'META.json: requires PostgreSQL 15 and nothing later (the C code uses PostgreSQL 15 APIs, e.g. PGPROC.lxid)');
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json: meta-spec 1.0.0');
ok(ref $meta->{maintainer} eq 'ARRAY' && @{ $meta->{maintainer} } > 0, 'META.json: a maintainer');
for my $k (qw(file docfile))
{
	my $f = $meta->{provides}{eventsource}{$k} // '';
	ok($f ne '' && -f $f, "META.json: provides.eventsource.$k ($f) exists");
}

like(slurp('LICENSE'), qr/\APostgreSQL License\n\nCopyright \(c\) 2026, eventsource contributors\n/,
	'LICENSE: the PostgreSQL License, eventsource contributors');
like(slurp('README.md'), qr/\[LICENSE\]\(LICENSE\)/, 'the README names the LICENSE');
like($control, qr/^#.*LICENSE/m, 'so does the control file');

# every script is installed, and the chain reaches the default version
my ($data) = slurp('Makefile') =~ /^DATA\s*=\s*((?:[^\n]*\\\n)*[^\n]*)$/m;
my %installed = map { $_ => 1 } split /[\s\\]+/, $data // '';
for my $script (glob 'eventsource--*.sql')
{
	ok($installed{$script}, "the Makefile installs $script");
}
ok(-f "eventsource--1.0.sql", 'the frozen 1.0 script is there');

# make dist, as make would run it (no git repository in the test copy)
my $dry = `make -s -n dist 2>&1`;
my $dist = "eventsource-$default.0";
like($dry, qr{git archive --format=zip --prefix=\Q$dist\E/ -o \Q$dist\E\.zip HEAD},
	"make dist builds $dist.zip with the top directory $dist/");
like($dry, qr{git archive --format=tar\.gz --prefix=\Q$dist\E/ -o \Q$dist\E\.tar\.gz HEAD},
	"and $dist.tar.gz");

# ... and for real: the archives of a commit of this tree hold everything a
# packager needs, under the top directory
my $tmp = PostgreSQL::Test::Utils::tempdir();
system("tar --exclude='./tmp_check*' --exclude=./output_iso --exclude=./results -cf - . | tar -C $tmp -xf -") == 0
  or die "copying the tree failed";
my $git = "git -C $tmp -c user.name=test -c user.email=test\@example.invalid";
for my $cmd ("$git init -q", "$git add -A", "$git commit -q -m release")
{
	system($cmd) == 0 or die "$cmd failed";
}
my $made = `make -s -C $tmp dist 2>&1`;
is($?, 0, 'make dist in a git repository succeeds') or diag($made);
my @want = ('META.json', 'LICENSE', 'README.md', 'Makefile', 'eventsource.control',
	sort(glob('eventsource--*.sql')), 'src/eventsource.h', 'src/spi.c');
for my $kind (['zip', "unzip -Z1 $tmp/$dist.zip"], ['tar.gz', "tar -tzf $tmp/$dist.tar.gz"])
{
	my @listed = split /\n/, `$kind->[1] 2>&1`;
	ok(@listed > 0 && !grep({ !m{^\Q$dist\E/} } @listed), "$dist.$kind->[0]: everything under $dist/")
	  or diag(join("\n", @listed));
	my %has = map { $_ => 1 } @listed;
	is(join(', ', grep { !$has{"$dist/$_"} } @want), '',
		"$dist.$kind->[0] holds META.json, LICENSE, the control file and every SQL script");
}

# the library must know its version: no build without one
my $nover = `make -s -n ES_VERSION= 2>&1`;
isnt($?, 0, 'make refuses to build without a default_version');
like($nover, qr/no default_version of the form 'major\.minor'/, 'saying why');
my $incdir = `pg_config --includedir-server`;
chomp $incdir;
my $cc = `printf '#include "postgres.h"\n#include "eventsource.h"\n' | cc -fsyntax-only -I src -I '$incdir' -DES_LIBRARY_VERSION='""' -x c - 2>&1`;
isnt($?, 0, 'the library does not compile with an empty ES_LIBRARY_VERSION');
like($cc, qr/ES_LIBRARY_VERSION must not be empty/, 'saying why');

done_testing();

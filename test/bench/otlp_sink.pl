#!/usr/bin/perl
# test/bench/otlp_sink.pl: the benchmark's OTLP/HTTP receiver on loopback.
#
#   perl otlp_sink.pl DIR     # listens on 127.0.0.1, a free port
#
# Writes "PID URL" to DIR/url once it listens.  Reads every request whole
# (headers, then Content-Length bytes of body, with large sysreads) and
# answers 200 with "{}", keeping the connection open (HTTP/1.1 keep-alive,
# as a collector does), so the exporter's libcurl handle reuses it.  It does
# not decode: it is cheap on purpose, so that the benchmark measures the
# extension and not a receiver.  (The TAP test's receiver,
# test/perl/OtlpReceiver.pm, decodes against the OTLP schema.)  Counts
# requests and body bytes, written to DIR/count ("requests bytes") when it
# exits on SIGTERM (not per request: a file written per request cost it
# more CPU than reading the request).  One connection at a time.
use strict;
use warnings;
use IO::Socket::INET;

my $dir = shift or die "usage: otlp_sink.pl DIR\n";
my $sock = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 16,
	ReuseAddr => 1) or die "listen: $!";
$SIG{PIPE} = 'IGNORE';
my ($requests, $bytes) = (0, 0);

sub note
{
	open my $fh, '>', "$dir/count.tmp" or die "$dir/count.tmp: $!";
	print $fh "$requests $bytes\n";
	close $fh;
	rename "$dir/count.tmp", "$dir/count" or die "rename: $!";
}

$SIG{TERM} = sub { note(); exit 0; };
{
	open my $fh, '>', "$dir/url.tmp" or die "$dir/url.tmp: $!";
	printf $fh "%d http://127.0.0.1:%d/v1/traces\n", $$, $sock->sockport;
	close $fh;
	rename "$dir/url.tmp", "$dir/url" or die "rename: $!";
}

# Serve requests on one connection until the client closes it.
sub serve
{
	my ($c) = @_;
	my $buf = '';
	for (;;)
	{
		my $end;
		# the header block
		until (($end = index($buf, "\r\n\r\n")) >= 0)
		{
			my $r = sysread($c, $buf, 65536, length $buf);
			return unless $r;
		}
		my $head = substr($buf, 0, $end);
		my ($len) = $head =~ /^content-length:\s*(\d+)/im;
		my $close = $head =~ /^connection:\s*close/im;
		$len //= 0;
		my $need = $end + 4 + $len;
		while (length($buf) < $need)
		{
			my $r = sysread($c, $buf, Max($need - length($buf), 65536), length $buf);
			return unless $r;
		}
		substr($buf, 0, $need, '');
		$requests++;
		$bytes += $len;
		my $resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		  . "Content-Length: 2\r\n" . ($close ? "Connection: close\r\n" : '') . "\r\n{}";
		return unless defined syswrite($c, $resp);
		return if $close;
	}
}

sub Max { $_[0] > $_[1] ? $_[0] : $_[1] }

while (my $c = $sock->accept)
{
	serve($c);
	close $c;
}

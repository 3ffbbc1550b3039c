/*
 * Reads one result with pgjdbc and prints the MD5 of it as COPY text, as one JSON line.
 *
 *   java -cp /usr/share/java/postgresql.jar CompressedLinkCheck.java \
 *       --host 127.0.0.1 --port 5439 --user u --dbname dev [--password p] \
 *       [--sslmode disable|verify-full [--sslrootcert CA.pem]] [--fetch-size N] \
 *       --mode copy|select --query SQL
 *
 * prints {"md5": "<hex>", "bytes": N, "rows": N, "seconds": S} and exits 0, or prints the
 * error on stderr and exits 1. tests/e2e/drivers/compressed_link_check.py does the same with
 * psycopg 3.
 *
 * - copy: QUERY is a `copy (...) to stdout`; CopyManager.copyOut writes what it receives into
 *   a stream that hashes it in 1 MiB chunks; rows is the count in the server's COPY tag.
 * - select: QUERY is a plain SELECT, run with autocommit off and a fetch size of 10 000 (or
 *   --fetch-size N), so pgjdbc reads it through a portal 10 000 rows at a time instead of
 *   holding it whole (each batch costs a round trip; with --fetch-size 0, pgjdbc's default, the
 *   whole result arrives in one, which the benchmark uses across its delayed link), and
 *   with binaryTransfer=false, so getString is the server's own text for every type. Each row
 *   is hashed as COPY text would carry it: columns joined by a tab, a newline after each row,
 *   NULL as \N. Values with tabs, newlines or backslashes, which COPY escapes, are not escaped
 *   here: the queries avoid them.
 *
 * seconds is the wall time from before the connection to after the last byte; the program
 * hashes in 1 MiB chunks and does no per-row work beyond a row's text, so it can time a client
 * too. The compressed_link suite (tests/e2e/compressed_link.rs) runs it with the JDK's source
 * launcher.
 */

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import org.postgresql.PGConnection;

public class CompressedLinkCheck {
    private static final int CHUNK = 1 << 20;

    /** Hashes and counts what is written, in chunks of up to 1 MiB. */
    static final class HashingStream extends OutputStream {
        final MessageDigest md5;
        final byte[] buffer = new byte[CHUNK];
        int filled;
        long total;

        HashingStream(MessageDigest md5) {
            this.md5 = md5;
        }

        @Override
        public void write(int b) {
            if (filled == buffer.length) {
                flush();
            }
            buffer[filled++] = (byte) b;
        }

        @Override
        public void write(byte[] bytes, int offset, int length) {
            if (length > buffer.length - filled) {
                flush();
            }
            if (length >= buffer.length) {
                md5.update(bytes, offset, length);
                total += length;
                return;
            }
            System.arraycopy(bytes, offset, buffer, filled, length);
            filled += length;
        }

        @Override
        public void flush() {
            md5.update(buffer, 0, filled);
            total += filled;
            filled = 0;
        }
    }

    public static void main(String[] argv) {
        try {
            System.out.println(run(parse(argv)));
        } catch (IllegalArgumentException e) {
            System.err.println("CompressedLinkCheck: " + e.getMessage());
            System.exit(2);
        } catch (SQLException | IOException e) {
            System.err.println("CompressedLinkCheck: " + e);
            System.exit(1);
        }
    }

    static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        args.put("sslmode", "disable");
        for (int i = 0; i < argv.length; i += 2) {
            String name = argv[i];
            if (!name.startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --NAME VALUE pairs, got " + name);
            }
            args.put(name.substring(2), argv[i + 1]);
        }
        for (String required : new String[] {"host", "port", "user", "dbname", "mode", "query"}) {
            if (!args.containsKey(required)) {
                throw new IllegalArgumentException("--" + required + " is required");
            }
        }
        String mode = args.get("mode");
        if (!mode.equals("copy") && !mode.equals("select")) {
            throw new IllegalArgumentException("--mode is copy or select, not " + mode);
        }
        return args;
    }

    static String run(Map<String, String> args) throws SQLException, IOException {
        String url = "jdbc:postgresql://" + args.get("host") + ":" + args.get("port") + "/"
                + args.get("dbname");
        Properties props = new Properties();
        props.setProperty("user", args.get("user"));
        if (args.containsKey("password")) {
            props.setProperty("password", args.get("password"));
        }
        props.setProperty("sslmode", args.get("sslmode"));
        if (args.containsKey("sslrootcert")) {
            // A PEM CA file: the direct path of scripts/bench-compression, verify-full.
            props.setProperty("sslrootcert", args.get("sslrootcert"));
        }
        props.setProperty("binaryTransfer", "false");
        props.setProperty("connectTimeout", "30");
        MessageDigest md5;
        try {
            md5 = MessageDigest.getInstance("MD5");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        HashingStream out = new HashingStream(md5);
        long started = System.nanoTime();
        long rows;
        try (Connection conn = DriverManager.getConnection(url, props)) {
            if (args.get("mode").equals("copy")) {
                PGConnection pg = conn.unwrap(PGConnection.class);
                rows = pg.getCopyAPI().copyOut(args.get("query"), out);
            } else {
                int fetchSize = Integer.parseInt(args.getOrDefault("fetch-size", "10000"));
                rows = select(conn, args.get("query"), fetchSize, out);
            }
            out.flush();
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        return String.format(
                Locale.ROOT,
                "{\"md5\": \"%s\", \"bytes\": %d, \"rows\": %d, \"seconds\": %.3f}",
                hex(md5.digest()), out.total, rows, seconds);
    }

    static long select(Connection conn, String query, int fetchSize, HashingStream out)
            throws SQLException {
        conn.setAutoCommit(false);
        long rows = 0;
        StringBuilder text = new StringBuilder(2 * CHUNK);
        try (Statement statement = conn.createStatement()) {
            statement.setFetchSize(fetchSize);
            try (ResultSet result = statement.executeQuery(query)) {
                int columns = result.getMetaData().getColumnCount();
                while (result.next()) {
                    for (int i = 1; i <= columns; i++) {
                        if (i > 1) {
                            text.append('\t');
                        }
                        String value = result.getString(i);
                        text.append(value == null ? "\\N" : value);
                    }
                    text.append('\n');
                    rows++;
                    if (text.length() >= CHUNK) {
                        hash(text, out);
                    }
                }
            }
        }
        hash(text, out);
        conn.commit();
        return rows;
    }

    static void hash(StringBuilder text, HashingStream out) {
        byte[] bytes = text.toString().getBytes(StandardCharsets.UTF_8);
        out.write(bytes, 0, bytes.length);
        text.setLength(0);
    }

    static String hex(byte[] bytes) {
        StringBuilder hex = new StringBuilder(2 * bytes.length);
        for (byte b : bytes) {
            hex.append(String.format("%02x", b));
        }
        return hex.toString();
    }
}

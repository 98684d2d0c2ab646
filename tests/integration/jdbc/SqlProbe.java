import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.util.Properties;

/**
 * What DBeaver does first with a ClickHouse connection, through the ClickHouse JDBC driver:
 * connect, read the server's version, list the tables, run a query. Prints one line per step
 * (TAB-separated), which tests/integration/test_sql_endpoint.py checks.
 * Usage: java SqlProbe jdbc:clickhouse://host:port user password "SELECT ..."
 */
public final class SqlProbe {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("version\t" + meta.getDatabaseProductVersion());
            StringBuilder tables = new StringBuilder();
            try (ResultSet rs = meta.getTables(null, null, "%", null)) {
                while (rs.next()) {
                    tables.append(tables.length() == 0 ? "" : ",").append(rs.getString("TABLE_NAME"));
                }
            }
            System.out.println("tables\t" + tables);
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(args[3])) {
                ResultSetMetaData md = rs.getMetaData();
                StringBuilder header = new StringBuilder("columns");
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    header.append('\t').append(md.getColumnLabel(i));
                }
                System.out.println(header);
                while (rs.next()) {
                    StringBuilder row = new StringBuilder("row");
                    for (int i = 1; i <= md.getColumnCount(); i++) {
                        row.append('\t').append(rs.getString(i));
                    }
                    System.out.println(row);
                }
            }
            try (Statement st = conn.createStatement()) {
                st.executeQuery("DROP TABLE clicks");
                System.out.println("refused\tnone");
            } catch (java.sql.SQLException e) {
                System.out.println("refused\t" + e.getErrorCode());
            }
        }
    }
}
